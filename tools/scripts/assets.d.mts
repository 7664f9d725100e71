// Types of assets.mjs, for the TypeScript callers (tools/test-support, benches).
export declare const repoRoot: string;
export declare const nativeSourceDir: string;
export declare const nativeBuildDir: string;
export declare const executorHeader: string;
export declare const cudaSourceDir: string;
export declare const cudaBuildDir: string;
export declare const cudaDepsDir: string;
export declare const cudaLibraryPath: string;
export declare const wheelDir: string;
/** `<repo>/models`: where the generated models live (`models/<size>`). */
export declare const modelsDir: string;
export declare function ensureNative(options?: { force?: boolean }): Promise<void>;
export declare function findNvcc(): string | undefined;
export declare function unzip(file: string, dir: string): void;
export declare function ensureCudaExecutor(options?: { force?: boolean }): string | undefined;
/** Generates models/<size> with tools/prepare-model when it is missing; returns its folder. */
export declare function ensureModel(size?: "tiny" | "small"): string;
/** The workspace projects `name` runs on, itself last. */
export declare function workspaceClosure(name: string): { name: string; dir: string }[];
/** Compiles `name` and its workspace dependencies with tsup where dist/ is missing or stale; returns those built. */
export declare function ensureBuilt(name?: string, options?: { force?: boolean; dts?: boolean; log?: (line: string) => void }): string[];
export default function setup(): Promise<void>;
