import { expect, test } from "@playwright/test";
import { cancelQuietly, getJob, restRoot } from "./fixtures/api";
import { accountsCsv, uniqueName } from "./fixtures/csv";
import { DashboardPage } from "./fixtures/pages";
import { TestSite } from "./fixtures/site";

// "Wrong file": cancel the job, delete it, upload the right file instead.
test("a job started from the wrong file is cancelled, deleted and replaced", async ({ page, request }) => {
  const site = await TestSite.start({ delayMs: [500, 1000] });
  const started: number[] = [];
  try {
    const dashboard = new DashboardPage(page);
    await dashboard.open();
    const wrongName = uniqueName("Wrong file");
    const wrong = await dashboard.create("research", accountsCsv(site, 20), { name: wrongName, concurrency: 1 });
    started.push(wrong.id);
    await expect(wrong.status).toHaveText(/Processing/);

    await wrong.control("Cancel").click();
    await expect(wrong.dialog).toBeVisible();
    await expect(wrong.dialog.getByRole("heading", { name: "Cancel this job?" })).toBeVisible();
    await expect(wrong.dialog).toHaveAttribute("aria-modal", "true");
    await wrong.dialog.getByRole("button", { name: "Cancel job" }).click();
    await expect(wrong.dialog).toHaveCount(0);
    await expect(wrong.status).toHaveText(/Cancelled/);
    await expect(wrong.control("Resume")).toHaveCount(0);
    await expect(wrong.control("Pause")).toHaveCount(0);
    await expect(wrong.control("Cancel")).toHaveCount(0);
    await expect(wrong.summary).toContainText("cannot be resumed");
    // SPEC section 16: the accounts left are "not run", never waiting.
    await expect(page.locator(".counts dt").first()).toHaveText("Not run");
    await expect(page.getByText(/\d+ not run\./)).toBeVisible();
    await expect(page.getByText(/\d+ waiting\./)).toHaveCount(0);
    const cancelled = await getJob(request, "research", wrong.id);
    expect(cancelled.status).toBe("failed");
    expect(cancelled.cancelled).toBe(true);

    await wrong.confirm("Delete Job");
    await expect(page).toHaveURL(/\/$/);
    await expect(page.getByRole("heading", { name: "Jobs" })).toBeVisible();
    await expect(dashboard.row(wrongName)).toHaveCount(0);
    expect((await request.get(`${restRoot("research")}/${wrong.id}`)).status()).toBe(404);

    // The corrected file, from the dashboard the delete landed on.
    const rightName = uniqueName("Right file");
    const right = await dashboard.create("research", accountsCsv(site, 3, "Corrected"), { name: rightName });
    started.push(right.id);
    await expect(right.summary.getByRole("heading", { name: rightName })).toBeVisible();
    await expect(right.status).toHaveText(/Processing|Completed/);
  } finally {
    for (const id of started) await cancelQuietly(request, "research", id);
    await site.close();
  }
});
