import { expect, test, type Request } from "@playwright/test";
import { cancelQuietly } from "./fixtures/api";
import { accountsCsv, uniqueName } from "./fixtures/csv";
import { DashboardPage } from "./fixtures/pages";
import { TestSite } from "./fixtures/site";

// A hidden tab costs the server nothing; coming back shows fresh numbers at once.
test("refreshes hold while the tab is hidden and resume when it is shown", async ({ page, request }) => {
  // The browser under test never hides its tab by itself, so the page's view of
  // visibility is steered from the test.
  await page.addInitScript(() => {
    const w = window as unknown as { __hidden: boolean };
    w.__hidden = false;
    Object.defineProperty(Document.prototype, "visibilityState", {
      configurable: true,
      get: () => (w.__hidden ? "hidden" : "visible"),
    });
    Object.defineProperty(Document.prototype, "hidden", { configurable: true, get: () => w.__hidden });
  });
  const setHidden = (hidden: boolean) =>
    page.evaluate((h) => {
      (window as unknown as { __hidden: boolean }).__hidden = h;
      document.dispatchEvent(new Event("visibilitychange"));
    }, hidden);

  const site = await TestSite.start({ delayMs: [800, 1200] });
  let id = -1;
  try {
    const refreshes: Request[] = [];
    page.on("request", (r) => {
      if (/\/api\/get_job/.test(r.url())) refreshes.push(r);
    });
    const dashboard = new DashboardPage(page);
    await dashboard.open();
    const job = await dashboard.create("research", accountsCsv(site, 20), { name: uniqueName("Hidden"), concurrency: 1 });
    id = job.id;
    // Refreshing while visible.
    await expect.poll(() => refreshes.length, { timeout: 10_000 }).toBeGreaterThanOrEqual(1);

    await setHidden(true);
    // Requests are counted when they start, and the page checks visibility right
    // before starting one: from here on, nothing new may start.
    const whileHidden = refreshes.length;
    const since = Date.now();
    await expect
      .poll(() => (refreshes.length !== whileHidden ? "refreshed" : Date.now() - since > 7_000 ? "held" : "holding"), {
        timeout: 12_000,
        intervals: [250],
      })
      .toBe("held");

    const shownAt = Date.now();
    await setHidden(false);
    await expect.poll(() => refreshes.length, { timeout: 2_000 }).toBeGreaterThan(whileHidden);
    expect(Date.now() - shownAt).toBeLessThan(2_000);
  } finally {
    await cancelQuietly(request, "research", id);
    await site.close();
  }
});
