import { vitestProject } from "../../tools/config/vitest.mjs";

export default vitestProject("grammar", { assets: true });
