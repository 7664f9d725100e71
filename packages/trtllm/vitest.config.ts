import { vitestProject } from "../../tools/config/vitest.mjs";

// The executors use every core: test files take turns so timings and the event-loop checks stay meaningful.
export default vitestProject("trtllm", { assets: true, fileParallelism: false, hookTimeout: 120_000 });
