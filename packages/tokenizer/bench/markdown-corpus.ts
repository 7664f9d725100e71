// Real English and code for the tokenizer's bench and tests: the Markdown docs of the installed packages.
import { readdirSync, statSync } from "node:fs";
import { join, resolve } from "node:path";

/** The Markdown files over 2 KiB under the repo's node_modules (4 levels deep), sorted: the same install, the same list. */
export function markdownFiles(): string[] {
  const files: string[] = [];
  const walk = (dir: string, depth: number): void => {
    if (depth > 4) return;
    for (const name of readdirSync(dir).sort()) {
      const p = join(dir, name);
      const st = statSync(p, { throwIfNoEntry: false });
      if (!st) continue;
      if (st.isDirectory()) walk(p, depth + 1);
      else if (name.endsWith(".md") && st.size > 2048) files.push(p);
    }
  };
  walk(resolve(import.meta.dirname, "../../../node_modules"), 0);
  return files;
}
