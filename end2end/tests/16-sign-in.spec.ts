import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect, test } from "@playwright/test";
import { csv, uniqueName } from "./fixtures/csv";

// SPEC section 9: a jobdeck started with JOBDECK_TOKEN. The suite's own server runs
// without one, so this test starts a second server (the same binary, scripts/test.sh
// names it in JOBDECK_E2E_BIN) with a token, on a port and a database of its own.

const bin = process.env.JOBDECK_E2E_BIN;
const TOKEN = "e2e-token-3f9a7c";
const PORT = Number(process.env.JOBDECK_E2E_TOKEN_PORT ?? 3107);
const base = `http://127.0.0.1:${PORT}`;

test.skip(!bin, "JOBDECK_E2E_BIN names the server binary to start with a token (scripts/test.sh sets it)");

test("a person signs in, uses jobdeck, and signs out", async ({ page, request }) => {
  const dir = mkdtempSync(path.join(tmpdir(), "jobdeck-token-"));
  const server: ChildProcess = spawn(bin as string, [], {
    cwd: path.resolve(__dirname, "..", ".."),
    env: {
      ...process.env,
      JOBDECK_TOKEN: TOKEN,
      JOBDECK_DB: path.join(dir, "jobdeck.sqlite3"),
      LEPTOS_SITE_ADDR: `127.0.0.1:${PORT}`,
      LEPTOS_SITE_ROOT: "target/site",
    },
    stdio: "ignore",
  });
  try {
    await expect
      .poll(async () => (await request.get(`${base}/api/health`).catch(() => null))?.status() ?? 0, { timeout: 60_000 })
      .toBe(200);

    // The API: the bearer token or nothing.
    expect((await request.get(`${base}/api/process`)).status()).toBe(401);
    const auth = { Authorization: `Bearer ${TOKEN}` };
    const name = uniqueName("Signed in");
    const created = await request.post(`${base}/api/process`, {
      headers: auth,
      multipart: {
        file: { name: "a.csv", mimeType: "text/csv", buffer: Buffer.from(csv(["Company"], [["Acme"], ["Beta"]])) },
        name,
      },
    });
    expect(created.status()).toBe(201);
    const job = (await created.json()) as { id: number };

    // A page leads to the sign-in form; a wrong token is refused there.
    await page.goto(`${base}/processing/${job.id}`);
    await expect(page).toHaveURL(/\/signin\?next=%2Fprocessing%2F/);
    await page.getByLabel("Access token").fill("not the token");
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page.getByRole("alert")).toContainText("That is not the token");

    // The right one brings the person back to the page they asked for, and the UI works.
    await page.getByLabel("Access token").fill(TOKEN);
    await page.getByRole("button", { name: "Sign in" }).click();
    await expect(page).toHaveURL(`${base}/processing/${job.id}`);
    await expect(page.locator("body")).toHaveAttribute("data-hydrated", "true");
    await expect(page.getByRole("heading", { level: 1, name })).toBeVisible();
    const summary = page.getByRole("region", { name: "Job summary" });
    await expect(summary.getByRole("status", { name: "Job status" })).toContainText("Completed", { timeout: 30_000 });
    await summary.getByRole("button", { name: "Archive", exact: true }).click();
    await expect(summary.getByRole("button", { name: "Restore", exact: true })).toBeVisible();
    const cookies = await page.context().cookies(base);
    const session = cookies.find((c) => c.name === "jobdeck_session");
    expect(session?.httpOnly).toBe(true);
    expect(session?.sameSite).toBe("Strict");

    // Signing out ends it: pages lead to the form again.
    await page.getByRole("button", { name: "Sign out" }).click();
    await expect(page).toHaveURL(/\/signin$/);
    await page.goto(`${base}/`);
    await expect(page).toHaveURL(/\/signin\?next=%2F$/);
  } finally {
    server.kill("SIGTERM");
    await new Promise((resolve) => server.once("exit", resolve).once("error", resolve));
    rmSync(dir, { recursive: true, force: true });
  }
});
