import { vitestProject } from "../../tools/config/vitest.mjs";

export default vitestProject("multihost", { assets: true, include: ["test/**/*.test.ts"], testTimeout: 180_000, hookTimeout: 180_000 });
