import { describe, expect, it } from "vitest";
import { PayloadTooLargeError } from "./errors.js";
import { InProcessBus, InProcessTransport } from "./inprocess-transport.js";
import type { TransportMsg } from "./transport.js";

const bytes = (s: string) => new TextEncoder().encode(s);
const text = (m: TransportMsg) => new TextDecoder().decode(m.data);

describe("in-process transport", () => {
  it("matches * and > like NATS, delivers asynchronously and in order", async () => {
    const t = new InProcessTransport(new InProcessBus());
    const got: string[] = [];
    t.subscribe("a.*.c", (m) => got.push(`star:${m.subject}`));
    t.subscribe("a.>", (m) => got.push(`gt:${m.subject}:${text(m)}`));
    t.subscribe("a", () => got.push("bare"));
    t.publish("a.b.c", bytes("1"));
    t.publish("a.b", bytes("2"));
    t.publish("a.b.c.d", bytes("3"));
    t.publish("a", bytes("4"));
    expect(got).toEqual([]); // nothing synchronously
    await t.flush();
    expect(got).toEqual(["star:a.b.c", "gt:a.b.c:1", "gt:a.b:2", "gt:a.b.c.d:3", "bare"]);
    await t.close();
  });

  it("queue groups deliver each message to one member; no subscriber + reply gives a no-responders status", async () => {
    const bus = new InProcessBus();
    const a = new InProcessTransport(bus);
    const b = new InProcessTransport(bus);
    let na = 0;
    let nb = 0;
    a.subscribe("work", () => na++, { queue: "q" });
    b.subscribe("work", () => nb++, { queue: "q" });
    for (let i = 0; i < 200; i++) a.publish("work", bytes("x"));
    const statuses: TransportMsg[] = [];
    a.subscribe("inbox.1", (m) => statuses.push(m));
    a.publish("nobody", bytes("?"), { reply: "inbox.1" });
    await a.flush();
    expect(na + nb).toBe(200);
    expect(na).toBeGreaterThan(50);
    expect(nb).toBeGreaterThan(50);
    expect(statuses).toHaveLength(1);
    expect(statuses[0].noResponders).toBe(true);
    await a.close();
    expect(bus.subscriptionCount).toBe(1); // b's queue sub remains; a's two are gone
    await b.close();
    expect(bus.subscriptionCount).toBe(0);
    expect(() => a.publish("work", bytes("late"))).toThrow(/closed/);
  });

  it("enforces the bus's max payload", () => {
    const t = new InProcessTransport(new InProcessBus(16));
    expect(() => t.publish("x", new Uint8Array(17))).toThrow(PayloadTooLargeError);
    t.publish("x", new Uint8Array(16));
  });
});
