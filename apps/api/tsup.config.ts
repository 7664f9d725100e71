import { tsupBuild } from "../../tools/config/tsup.mjs";

export default tsupBuild(["src/main.ts", "src/index.ts"], { dts: false });
