import { expect, test } from "@playwright/test";
import { restRoot, type Job } from "./fixtures/api";
import { accountsCsv, uniqueName } from "./fixtures/csv";
import { DashboardPage } from "./fixtures/pages";
import { TestSite } from "./fixtures/site";

// The dashboard follows running jobs by itself, in place, without reloading.
test("the dashboard updates a running job's row until it completes", async ({ page, request }) => {
  const site = await TestSite.start({ delayMs: [300, 600] });
  try {
    const name = uniqueName("Watched");
    const res = await request.post(restRoot("research"), {
      multipart: {
        file: { name: "watched.csv", mimeType: "text/csv", buffer: Buffer.from(accountsCsv(site, 8)) },
        name,
        concurrency: "1",
      },
    });
    expect(res.status()).toBe(201);
    const job = (await res.json()) as Job;

    const dashboard = new DashboardPage(page);
    await dashboard.open();
    // A full reload would drop this marker.
    await page.evaluate(() => ((window as unknown as { __sameDocument: boolean }).__sameDocument = true));
    const row = dashboard.row(name);
    await expect(row).toContainText(/Processing|Pending/);
    await expect(row.getByRole("progressbar", { name: "Progress" })).toBeVisible();
    await expect(row).toContainText("of 8 done");
    await expect(row.getByRole("link", { name, exact: true })).toHaveAttribute("href", `/processing/${job.id}`);

    await expect(row).toContainText("Completed", { timeout: 30_000 });
    await expect(row).toContainText("8 of 8 done");
    expect(await page.evaluate(() => (window as unknown as { __sameDocument?: boolean }).__sameDocument)).toBe(true);
  } finally {
    await site.close();
  }
});
