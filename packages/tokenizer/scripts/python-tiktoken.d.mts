/** A Python that imports tiktoken, or why there is none. */
export function findPythonTiktoken(): { python: string; version: string; reason?: undefined } | { python?: undefined; version?: undefined; reason: string };
