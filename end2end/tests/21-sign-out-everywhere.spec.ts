import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { expect, test, type Page } from "@playwright/test";

// SPEC section 11: sessions live on the server. Two browsers are signed in; one signs
// out everywhere, and the other, and a copy of its cookie, are signed out too. Like
// 16-sign-in, this starts a second server (JOBDECK_E2E_BIN) with a token of its own.

const bin = process.env.JOBDECK_E2E_BIN;
const TOKEN = "e2e-everywhere-token-81c2";
const PORT = Number(process.env.JOBDECK_E2E_EVERYWHERE_PORT ?? 3108);
const base = `http://127.0.0.1:${PORT}`;

test.skip(!bin, "JOBDECK_E2E_BIN names the server binary to start with a token (scripts/test.sh sets it)");

async function signIn(page: Page): Promise<void> {
  await page.goto(`${base}/`);
  await expect(page).toHaveURL(/\/signin\?next=%2F$/);
  await page.getByLabel("Access token").fill(TOKEN);
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(`${base}/`);
  await expect(page.getByRole("button", { name: "Sign out" })).toBeVisible();
}

test("signing out everywhere ends every browser's session", async ({ browser, request }) => {
  const dir = mkdtempSync(path.join(tmpdir(), "jobdeck-everywhere-"));
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
  const laptop = await browser.newContext();
  const phone = await browser.newContext();
  try {
    await expect
      .poll(async () => (await request.get(`${base}/api/health`).catch(() => null))?.status() ?? 0, { timeout: 60_000 })
      .toBe(200);
    const [first, second] = [await laptop.newPage(), await phone.newPage()];
    await signIn(first);
    await signIn(second);
    const cookie = (await phone.cookies(base)).find((c) => c.name === "jobdeck_session");
    expect(cookie).toBeDefined();

    // The laptop asks for it, reads what it does, and confirms.
    await first.getByRole("link", { name: "Sign out everywhere…" }).click();
    await expect(first.getByRole("heading", { name: "Sign out everywhere" })).toBeVisible();
    await first.getByRole("button", { name: "Sign out everywhere" }).click();
    await expect(first).toHaveURL(/\/signin$/);

    // The phone, which did nothing, is signed out at its next page.
    await second.goto(`${base}/`);
    await expect(second).toHaveURL(/\/signin\?next=%2F$/);
    // A copy of its cookie opens nothing either.
    const copied = await request.get(`${base}/api/process`, {
      headers: { Cookie: `jobdeck_session=${cookie?.value}` },
    });
    expect(copied.status()).toBe(401);
  } finally {
    await laptop.close();
    await phone.close();
    server.kill("SIGTERM");
    await new Promise((resolve) => server.once("exit", resolve).once("error", resolve));
    rmSync(dir, { recursive: true, force: true });
  }
});
