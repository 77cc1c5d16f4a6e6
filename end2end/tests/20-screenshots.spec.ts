import { expect, test, type Page } from "@playwright/test";
import { cancelQuietly, waitForJob } from "./fixtures/api";
import { shoot } from "./fixtures/artifacts";
import { accountsCsv, csv, uniqueName } from "./fixtures/csv";
import { DashboardPage, type JobPage } from "./fixtures/pages";
import { TestSite } from "./fixtures/site";

// Pictures of every page in every state, at desktop and phone width, for people to
// look at (they are not compared against anything).
test.use({ viewport: { width: 1280, height: 900 } });

const PHONE = { width: 375, height: 812 };
const DESKTOP = { width: 1280, height: 900 };

async function both(page: Page, name: string): Promise<void> {
  await shoot(page, `${name}-desktop`);
  await page.setViewportSize(PHONE);
  await shoot(page, `${name}-phone`);
  await page.setViewportSize(DESKTOP);
}

test("full research job pages in each state", async ({ page, request }) => {
  const site = await TestSite.start({ delayMs: [1500, 2500] });
  const ids: number[] = [];
  try {
    const dashboard = new DashboardPage(page);
    await dashboard.open();
    const job: JobPage = await dashboard.create("research", accountsCsv(site, 24), {
      name: "Trade fair leads",
      concurrency: 2,
      filename: "trade-fair-leads.csv",
    });
    ids.push(job.id);
    await expect.poll(() => job.count("Completed"), { timeout: 30_000 }).toBeGreaterThanOrEqual(2);
    await both(page, "research-processing");

    await job.control("Pause").click();
    await expect(job.status).toHaveText(/Paused/);
    await expect(job.control("Resume")).toBeEnabled();
    await both(page, "research-paused");

    await page.getByRole("link", { name: "View All Accounts" }).click();
    await expect(page.getByRole("heading", { name: /Accounts of/ })).toBeVisible();
    await both(page, "accounts-paused");
    await page.goBack();

    await job.control("Cancel").click();
    await expect(job.dialog).toBeVisible();
    await shoot(page, "research-cancel-dialog-desktop");
    await page.setViewportSize(PHONE);
    await shoot(page, "research-cancel-dialog-phone");
    await page.setViewportSize(DESKTOP);
    await job.dialog.getByRole("button", { name: "Cancel job" }).click();
    await expect(job.status).toHaveText(/Cancelled/);
    await both(page, "research-cancelled");

    site.setDelay([0, 50]);
    await dashboard.open();
    const done = await dashboard.create("research", accountsCsv(site, 6, "Widget maker"), { name: "Small list" });
    ids.push(done.id);
    await expect(done.status).toHaveText(/Completed/, { timeout: 30_000 });
    await both(page, "research-completed");
    await page.getByRole("link", { name: "View All Accounts" }).click();
    await expect(page.getByRole("cell", { name: /Company 1 – industrial widgets/ })).toBeVisible();
    await both(page, "accounts-completed");
  } finally {
    for (const id of ids) await cancelQuietly(request, "research", id);
    await site.close();
  }
});

test("preprocessing job pages in each state, and the dashboard", async ({ page, request }) => {
  const site = await TestSite.start({ delayMs: [1500, 2500], hosts: ["127.0.0.2", "127.0.0.3", "127.0.0.5"] });
  const ids: number[] = [];
  try {
    const rows = [
      ["Acme Inc.", site.url(1, "127.0.0.2"), "sales@acme.example"],
      ["  Globex   GmbH ", site.url(2, "127.0.0.3"), ""],
      ["Acme Incorporated", `http://www.127.0.0.2:${new URL(site.origin("127.0.0.2")).port}/site/3`, ""],
      ["Initech LLC", "", "jane.doe@gmail.com"],
      ["Umbrella Ltd", "http://127.0.0.6:9/", ""],
      ["", site.url(4, "127.0.0.5"), ""],
    ];
    const messy = csv(["Company", "Website", "Email"], rows);
    const dashboard = new DashboardPage(page);
    await dashboard.open();
    const job = await dashboard.create("preprocess", messy, { name: "CRM export", concurrency: 1 });
    ids.push(job.id);
    await expect(job.status).toHaveText(/Processing/);
    await both(page, "preprocess-processing");
    await job.control("Pause").click();
    await expect(job.status).toHaveText(/Paused/);
    await expect(job.control("Resume")).toBeEnabled();
    await both(page, "preprocess-paused");
    await job.confirm("Cancel");
    await expect(job.status).toHaveText(/Cancelled/);
    await both(page, "preprocess-cancelled");

    site.setDelay([0, 50]);
    await dashboard.open();
    const done = await dashboard.create("preprocess", messy, { name: "CRM export, again" });
    ids.push(done.id);
    await expect(done.status).toHaveText(/Completed/, { timeout: 30_000 });
    await both(page, "preprocess-completed");

    // A job still running, so the dashboard shows every colour.
    site.setDelay([3000, 4000]);
    await dashboard.open();
    const running = await dashboard.create("preprocess", messy, { name: "Slow list", concurrency: 1 });
    ids.push(running.id);
    await waitForJob(request, "preprocess", running.id, (j) => j.processing > 0, 10_000);
    await dashboard.open();
    await expect(dashboard.row("Slow list")).toBeVisible();
    await both(page, "dashboard");

    // Two jobs chosen for the bulk bar, and what a bulk pause said about each.
    await dashboard.row("Slow list").getByRole("checkbox").check();
    await dashboard.row("CRM export, again").getByRole("checkbox").check();
    await expect(page.getByRole("toolbar", { name: "Act on several jobs" })).toContainText("2 chosen");
    await both(page, "dashboard-selection");
    await page.getByRole("toolbar", { name: "Act on several jobs" }).getByRole("button", { name: "Pause", exact: true }).click();
    await expect(page.getByTestId("bulk-report")).toContainText("1 refused");
    await both(page, "dashboard-bulk-report");
  } finally {
    for (const id of ids) await cancelQuietly(request, "preprocess", id);
    await site.close();
  }
});

test("the dashboard with an upload error, and an unknown job", async ({ page }) => {
  const dashboard = new DashboardPage(page);
  await dashboard.open();
  await dashboard.upload("research", csv(["Company", "Website", "Notes"], [["Acme", "acme.example", ""], ["", "", "call back"]]), {
    name: uniqueName("Broken"),
  });
  await expect(dashboard.form("research").getByRole("alert")).toBeVisible();
  await shoot(page, "dashboard-upload-error-desktop");
  await page.goto("/processing/987654");
  await expect(page.getByRole("heading", { name: "No such job" })).toBeVisible();
  await shoot(page, "not-found-desktop");
});
