import { tsupBuild } from "../../tools/config/tsup.mjs";

export default tsupBuild(["src/cli.ts", "src/index.ts"], { dts: { entry: "src/index.ts" } });
