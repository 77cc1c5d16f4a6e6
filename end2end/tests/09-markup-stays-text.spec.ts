import { expect, test } from "@playwright/test";
import { openHydrated } from "./fixtures/app";
import { csv } from "./fixtures/csv";
import { DashboardPage, JobPage } from "./fixtures/pages";

// Hostile text in a job name and in an account: shown as text on every page, never
// run, and the app's own scripts still run under the Content-Security-Policy.
test("a job named like markup stays text in the title, the banner and the list", async ({ page }) => {
  const marker = `${Date.now().toString(36)}${Math.floor(Math.random() * 1e4)}`;
  const name = `</title><script>window.__pwned="title"</script><img src=x onerror="window.__pwned='img'"> ${marker}`;
  const account = `<b>Bold ${marker}</b><script>window.__pwned="account"</script>`;
  const dialogs: string[] = [];
  page.on("dialog", async (d) => {
    dialogs.push(d.message());
    await d.dismiss();
  });
  const cspErrors: string[] = [];
  page.on("console", (m) => {
    if (m.type() === "error" && /Content Security Policy/i.test(m.text())) cspErrors.push(m.text());
  });

  const dashboard = new DashboardPage(page);
  await dashboard.open();
  const created = await dashboard.create("research", csv(["Company"], [[account]]), { name });

  // Read the job's page afresh from the server, then hydrated.
  const job = new JobPage(page, "research", created.id);
  await job.open();
  expect(await page.title()).toBe(`${name} · Full research · jobdeck`);
  await expect(page.getByRole("heading", { level: 1 })).toHaveText(name);
  expect(await page.evaluate(() => (window as unknown as { __pwned?: string }).__pwned)).toBeUndefined();

  await openHydrated(page, "/");
  await expect(dashboard.row(name)).toHaveCount(1);

  await openHydrated(page, `/processing/${created.id}/accounts`);
  await expect(page.getByText(`<b>Bold ${marker}</b>`, { exact: false }).first()).toBeVisible();
  expect(await page.evaluate(() => (window as unknown as { __pwned?: string }).__pwned)).toBeUndefined();
  expect(await page.locator("b", { hasText: `Bold ${marker}` }).count()).toBe(0);

  expect(dialogs).toEqual([]);
  expect(cspErrors, "the app's own scripts are allowed by its policy").toEqual([]);
});
