import { vitestProject } from "../../tools/config/vitest.mjs";

export default vitestProject("process");
