import { vitestProject } from "../../tools/config/vitest.mjs";

// The setup builds the native BPE encoder (build/libtrtd_bpe.so) when missing or stale.
export default vitestProject("tokenizer", { globalSetup: ["./scripts/build-native.mjs"] });
