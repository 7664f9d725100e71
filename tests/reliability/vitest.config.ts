import { vitestProject } from "../../tools/config/vitest.mjs";

// Each file runs its own deployment of real processes: one at a time on a 2-core machine.
export default vitestProject("reliability", { assets: true, include: ["test/**/*.test.ts"], fileParallelism: false, testTimeout: 90_000, hookTimeout: 90_000 });
