import type { Server } from "node:http";
import { startFakeLlm } from "./tests/fixtures/llm";

// Starts the fake LLM endpoint the server is pointed at (scripts/test.sh), then waits
// until the jobdeck server that cargo-leptos started answers. The returned function
// stops the fake when the run ends.
export default async function globalSetup(): Promise<() => Promise<void>> {
  let llm: Server | undefined;
  try {
    llm = await startFakeLlm();
  } catch (e) {
    // Another run's fake may already listen there; the tests work with either.
    console.warn(`fake LLM endpoint not started: ${String(e)}`);
  }
  const base = process.env.JOBDECK_URL ?? "http://127.0.0.1:3000";
  const deadline = Date.now() + 120_000;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${base}/api/health`);
      if (res.ok) {
        return async () => {
          await new Promise<void>((resolve) => (llm ? llm.close(() => resolve()) : resolve()));
        };
      }
      last = `HTTP ${res.status}`;
    } catch (e) {
      last = String(e);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`jobdeck did not answer at ${base} within 120 s: ${last}`);
}
