// Reading the choices of an n > 1 chat stream through the official client (n-choices tests, aggregated and
// disaggregated): all of them, or until every choice is generating and the client leaves.
import type OpenAI from "openai";
import { expect } from "vitest";

export interface StreamedChoice {
  text: string;
  finish: string | null;
}

/** A streamed chat's choices by index, checking that each ends with exactly one finish_reason chunk, its last. */
export async function streamedChoices(stream: AsyncIterable<OpenAI.Chat.ChatCompletionChunk>): Promise<{ choices: StreamedChoice[]; usage: OpenAI.CompletionUsage | undefined | null }> {
  const choices: StreamedChoice[] = [];
  let usage: OpenAI.CompletionUsage | undefined | null;
  for await (const chunk of stream) {
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices) {
      const at = (choices[c.index] ??= { text: "", finish: null });
      expect(at.finish, `choice ${c.index} got a chunk after its finish_reason`).toBeNull();
      at.text += c.delta.content ?? "";
      at.finish = c.finish_reason;
    }
  }
  return { choices, usage };
}

/**
 * Reads `stream` until each of its `n` choices has streamed content, then aborts `ac` (the client leaves). Returns
 * how many choices had finished by then and the most requests `activeRequests()` saw running at once.
 */
export async function leaveOnceEveryChoiceGenerates(
  stream: AsyncIterable<OpenAI.Chat.ChatCompletionChunk>,
  ac: AbortController,
  n: number,
  activeRequests: () => number,
): Promise<{ finished: number; peakActive: number }> {
  const seen = new Set<number>();
  let finished = 0;
  let peakActive = 0;
  try {
    for await (const chunk of stream) {
      peakActive = Math.max(peakActive, activeRequests());
      for (const c of chunk.choices) {
        if (c.delta.content) seen.add(c.index);
        if (c.finish_reason) finished++;
      }
      if (seen.size === n) ac.abort(); // every choice is generating: leave
    }
  } catch (err) {
    if (!ac.signal.aborted) throw err;
  }
  return { finished, peakActive };
}
