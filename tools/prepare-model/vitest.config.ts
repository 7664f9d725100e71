import { vitestProject } from "../../tools/config/vitest.mjs";

// assets: convert --precision is checked on models/tiny with the reference executor.
export default vitestProject("prepare-model", { assets: true });
