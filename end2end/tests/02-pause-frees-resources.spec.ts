import { expect, test } from "@playwright/test";
import { cancelQuietly, getJob, waitForJob } from "./fixtures/api";
import { accountsCsv, uniqueName } from "./fixtures/csv";
import { DashboardPage } from "./fixtures/pages";
import { TestSite } from "./fixtures/site";

// "Free up resources": pausing stops new work at once; resuming finishes the job
// with every account researched exactly once.
test("pause stops new accounts from starting and resume finishes the job", async ({ page, request }) => {
  const ACCOUNTS = 40;
  const site = await TestSite.start({ delayMs: [300, 800] });
  let id: number | undefined;
  try {
    const dashboard = new DashboardPage(page);
    await dashboard.open();
    const job = await dashboard.create("research", accountsCsv(site, ACCOUNTS), {
      name: uniqueName("Pause test"),
      concurrency: 2,
    });
    id = job.id;
    await expect(job.status).toHaveText(/Processing/);

    // Let a few accounts finish, so the job is really under way when it is paused.
    await expect.poll(() => job.count("Completed"), { timeout: 30_000 }).toBeGreaterThanOrEqual(3);
    await job.control("Pause").click();
    await expect(job.status).toHaveText(/Paused/);
    await expect(job.control("Resume")).toBeVisible();
    await expect(job.control("Pause")).toHaveCount(0);

    // The accounts in flight when Pause was pressed finish; then nothing moves.
    const paused = await waitForJob(request, "research", id, (j) => j.processing === 0, 20_000);
    expect(paused.paused).toBe(true);
    expect(paused.status).toBe("processing");
    expect(paused.pending).toBeGreaterThan(0);
    const hitsWhenIdle = site.total;
    const doneWhenIdle = paused.completed + paused.failed;
    const since = Date.now();
    // Several of the runner's 500 ms poll cycles and the page's 3 s refreshes go by.
    await expect
      .poll(
        async () => {
          const now = await getJob(request, "research", id!);
          if (site.total !== hitsWhenIdle || now.completed + now.failed !== doneWhenIdle || now.processing !== 0) {
            return `changed: ${site.total - hitsWhenIdle} new requests, processing ${now.processing}`;
          }
          return Date.now() - since >= 4_000 ? "held" : "holding";
        },
        { timeout: 10_000, intervals: [250] },
      )
      .toBe("held");
    await expect(job.status).toHaveText(/Paused/);
    // The page shows the same numbers the API does.
    await expect.poll(() => job.count("Processing")).toBe(0);

    await job.control("Resume").click();
    await expect(job.status).toHaveText(/Processing/);
    await expect(job.control("Pause")).toBeVisible();
    await expect(job.status).toHaveText(/Completed/, { timeout: 90_000 });
    await expect(job.control("Delete Job")).toBeVisible();
    await expect(job.summary.getByRole("link", { name: "View All Accounts" })).toBeVisible();

    const done = await getJob(request, "research", id);
    expect(done.status).toBe("completed");
    expect(done.completed + done.failed).toBe(ACCOUNTS);
    expect(done.failed).toBe(0);
    for (let n = 1; n <= ACCOUNTS; n++) {
      expect(site.count(`/site/${n}`), `requests for /site/${n}`).toBe(1);
    }
  } finally {
    if (id !== undefined) await cancelQuietly(request, "research", id);
    await site.close();
  }
});
