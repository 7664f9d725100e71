import { tsupBuild } from "../../tools/config/tsup.mjs";

export default tsupBuild(["src/index.ts"]);
