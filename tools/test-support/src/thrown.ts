/**
 * The message of the error `f` throws, which must be an instance of `type` (e.g. UsageError); throws (failing the
 * test) when `f` throws nothing or something else. For comparing one-line errors exactly.
 */
export function thrownMessage(f: () => unknown, type: abstract new (...args: never[]) => Error): string {
  try {
    f();
  } catch (err) {
    if (!(err instanceof type)) throw new Error(`expected a ${type.name}, got ${String(err)}`, { cause: err });
    return err.message;
  }
  throw new Error(`expected a ${type.name}, got none`);
}
