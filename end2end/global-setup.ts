// Waits until the jobdeck server that cargo-leptos started answers.
export default async function globalSetup(): Promise<void> {
  const base = process.env.JOBDECK_URL ?? "http://127.0.0.1:3000";
  const deadline = Date.now() + 120_000;
  let last = "";
  while (Date.now() < deadline) {
    try {
      const res = await fetch(`${base}/api/health`);
      if (res.ok) return;
      last = `HTTP ${res.status}`;
    } catch (e) {
      last = String(e);
    }
    await new Promise((r) => setTimeout(r, 250));
  }
  throw new Error(`jobdeck did not answer at ${base} within 120 s: ${last}`);
}
