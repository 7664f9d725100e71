import { defineConfig } from "vitest/config";

// One vitest run over every package and app; each has its own vitest.config.ts (a "project").
export default defineConfig({
  test: {
    projects: ["packages/*", "apps/*", "tools/prepare-model", "tools/bench", "tests/*"],
  },
});
