import { vitestProject } from "../../tools/config/vitest.mjs";

export default vitestProject("apps-common", { assets: true });
