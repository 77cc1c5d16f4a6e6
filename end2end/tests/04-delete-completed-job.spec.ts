import { expect, test } from "@playwright/test";
import { restRoot, waitForJob } from "./fixtures/api";
import { accountsCsv, uniqueName } from "./fixtures/csv";
import { DashboardPage, JobPage } from "./fixtures/pages";
import { TestSite } from "./fixtures/site";

// "Clean up": a finished job is deleted from its page and is gone everywhere.
test("deleting a completed job returns to the dashboard and removes it", async ({ page, request }) => {
  const site = await TestSite.start();
  try {
    const dashboard = new DashboardPage(page);
    await dashboard.open();
    const name = uniqueName("Done list");
    const created = await dashboard.create("research", accountsCsv(site, 3), { name });
    await waitForJob(request, "research", created.id, (j) => j.status === "completed");

    // Open the finished job afresh, as someone cleaning up would.
    const job = new JobPage(page, "research", created.id);
    await job.open();
    await expect(job.status).toHaveText(/Completed/);
    await expect(job.summary.getByRole("link", { name: "View All Accounts" })).toHaveAttribute(
      "href",
      `/processing/${job.id}/accounts`,
    );
    await expect(job.control("Pause")).toHaveCount(0);

    await job.control("Delete Job").click();
    await expect(job.dialog.getByRole("heading", { name: "Delete this job?" })).toBeVisible();
    await expect(job.dialog).toContainText("3 items");
    await job.dialog.getByRole("button", { name: "Delete job" }).click();

    await expect(page).toHaveURL(/\/$/);
    await expect(dashboard.row(name)).toHaveCount(0);
    expect((await request.get(`${restRoot("research")}/${job.id}`)).status()).toBe(404);

    // Its page now says so, with a way back.
    await job.open();
    await expect(page.getByRole("heading", { name: "No such job" })).toBeVisible();
    await page.getByRole("link", { name: "Back to the dashboard" }).click();
    await expect(page).toHaveURL(/\/$/);
  } finally {
    await site.close();
  }
});
