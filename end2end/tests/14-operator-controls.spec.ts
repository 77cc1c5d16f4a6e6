import { readFileSync } from "node:fs";
import { expect, test, type APIRequestContext } from "@playwright/test";
import { cancelQuietly, getJob, restRoot, waitForJob, type Job } from "./fixtures/api";
import { accountsCsv, csv, uniqueName } from "./fixtures/csv";
import { DashboardPage, JobPage } from "./fixtures/pages";
import { openHydrated } from "./fixtures/app";
import { TestSite } from "./fixtures/site";

// SPEC section 8: the controls operators ask for, clicked as they would.

async function createResearch(
  request: APIRequestContext,
  name: string,
  body: string,
  concurrency = 1,
): Promise<Job> {
  const res = await request.post(restRoot("research"), {
    multipart: {
      file: { name: "list.csv", mimeType: "text/csv", buffer: Buffer.from(body) },
      name,
      concurrency: String(concurrency),
    },
  });
  expect(res.status()).toBe(201);
  return (await res.json()) as Job;
}

/** The activity log's entries on a job page. */
const events = (page: import("@playwright/test").Page) =>
  page.getByRole("region", { name: "Activity" }).getByRole("listitem");

test("three jobs are paused at once from the dashboard's bulk bar", async ({ page, request }) => {
  const site = await TestSite.start({ delayMs: [400, 800] });
  const tag = uniqueName("Bulk");
  const jobs: Job[] = [];
  try {
    for (let i = 1; i <= 3; i++) jobs.push(await createResearch(request, `${tag} ${i}`, accountsCsv(site, 30)));
    const dashboard = new DashboardPage(page);
    await openHydrated(page, `/?q=${encodeURIComponent(tag)}`);
    await expect(page.getByRole("searchbox", { name: "Name contains" })).toHaveValue(tag);
    await expect(page.getByRole("row")).toHaveCount(4); // the heading row and the three jobs

    await page.getByRole("checkbox", { name: "Choose every job on this page" }).check();
    const bar = page.getByRole("toolbar", { name: "Act on several jobs" });
    await expect(bar).toContainText("3 chosen");
    await bar.getByRole("button", { name: "Pause", exact: true }).click();

    const report = page.getByTestId("bulk-report");
    await expect(report).toContainText("Pause: 3 jobs done");
    for (const job of jobs) {
      await expect(report.getByRole("link", { name: job.name, exact: true })).toBeVisible();
      await expect(dashboard.row(job.name)).toContainText("Paused");
      expect((await getJob(request, "research", job.id)).paused).toBe(true);
    }
  } finally {
    for (const job of jobs) await cancelQuietly(request, "research", job.id);
    await site.close();
  }
});

test("a finished job is archived from its page and restored from the archived list", async ({ page, request }) => {
  const site = await TestSite.start();
  try {
    const name = uniqueName("Archive me");
    const created = await createResearch(request, name, accountsCsv(site, 2), 2);
    await waitForJob(request, "research", created.id, (j) => j.status === "completed");
    const job = new JobPage(page, "research", created.id);
    await job.open();
    await job.summary.getByRole("button", { name: "Archive", exact: true }).click();
    await expect(job.summary.getByRole("button", { name: "Restore", exact: true })).toBeVisible();
    await expect(events(page).first()).toContainText("archived");

    const dashboard = new DashboardPage(page);
    await openHydrated(page, `/?q=${encodeURIComponent(name)}`);
    await expect(page.getByText("No job matches this filter.")).toBeVisible();
    await page.getByRole("combobox", { name: "Archived" }).selectOption("true");
    await expect(page).toHaveURL(/archived=true/);
    await expect(dashboard.row(name)).toContainText("Archived");

    await dashboard.row(name).getByRole("link", { name, exact: true }).click();
    await expect(page).toHaveURL(new RegExp(`/processing/${created.id}$`));
    await job.summary.getByRole("button", { name: "Restore", exact: true }).click();
    await expect(job.summary.getByRole("button", { name: "Archive", exact: true })).toBeVisible();
    await openHydrated(page, `/?q=${encodeURIComponent(name)}`);
    await expect(dashboard.row(name)).toBeVisible();
    expect((await getJob(request, "research", created.id)) as Job & { archivedAt: string | null }).toMatchObject({
      archivedAt: null,
    });
  } finally {
    await site.close();
  }
});

test("retry runs only the failed items of a completed job again", async ({ page, request }) => {
  const site = await TestSite.start();
  try {
    const body = csv(
      ["Company", "Website"],
      [
        ["Good One", site.url(1)],
        ["Good Two", site.url(2)],
        ["Broken", `${site.origin()}/gone`],
      ],
    );
    const created = await createResearch(request, uniqueName("Retry"), body, 2);
    await waitForJob(request, "research", created.id, (j) => j.status === "completed" && j.failed === 1);
    const job = new JobPage(page, "research", created.id);
    await job.open();
    await expect(job.summary.getByRole("button", { name: "Pause" })).toHaveCount(0);
    await job.summary.getByRole("button", { name: "Retry failed items" }).click();
    // The one failed item fails again at once, so "completed" may already be on top.
    await expect(events(page).filter({ hasText: "retried" })).toContainText("1 failed item back to pending");
    await waitForJob(request, "research", created.id, (j) => j.status === "completed");
    await expect(job.status).toHaveText(/Completed/);
    expect(site.count("/gone")).toBe(2);
    expect(site.count("/site/1")).toBe(1);
    expect(site.count("/site/2")).toBe(1);
  } finally {
    await site.close();
  }
});

test("e exports, and the delete dialog offers the exports, which download the job's data", async ({ page, request }) => {
  const site = await TestSite.start();
  try {
    const created = await createResearch(request, uniqueName("Export first"), accountsCsv(site, 3), 3);
    await waitForJob(request, "research", created.id, (j) => j.status === "completed");
    const job = new JobPage(page, "research", created.id);
    await job.open();

    // e exports the job as CSV from anywhere on its page.
    const byKey = page.waitForEvent("download");
    await page.keyboard.press("e");
    expect((await byKey).suggestedFilename()).toBe(`jobdeck-research-${created.id}.csv`);
    await expect(job.status).toHaveText(/Completed/);

    await job.control("Delete Job").click();
    await expect(job.dialog).toContainText("Keep a copy first");

    const csvDownload = page.waitForEvent("download");
    await job.dialog.getByRole("link", { name: "Export CSV" }).click();
    const file = await csvDownload;
    expect(file.suggestedFilename()).toBe(`jobdeck-research-${created.id}.csv`);
    const text = readFileSync(await file.path(), "utf-8");
    expect(text.split("\n")[0]).toContain("line,status,attempts,error,Company,Website");
    expect(text).toContain("Company 3 GmbH");

    const jsonDownload = page.waitForEvent("download");
    await job.dialog.getByRole("link", { name: "Export JSON" }).click();
    const json = JSON.parse(readFileSync(await (await jsonDownload).path(), "utf-8"));
    expect(json).toHaveLength(3);

    // The dialog is still open. Escape closes it; d opens it again with the focus on
    // "Keep job" (Enter there keeps the job); Tab then Enter deletes.
    await expect(job.dialog.getByRole("heading", { name: "Delete this job?" })).toBeVisible();
    await page.keyboard.press("Escape");
    await expect(job.dialog).toHaveCount(0);
    await page.keyboard.press("d");
    await expect(job.dialog.getByRole("button", { name: "Keep job" })).toBeFocused();
    await page.keyboard.press("Enter");
    await expect(job.dialog).toHaveCount(0);
    expect((await request.get(`${restRoot("research")}/${created.id}`)).status()).toBe(200);
    await page.keyboard.press("d");
    await expect(job.dialog.getByRole("button", { name: "Keep job" })).toBeFocused();
    await page.keyboard.press("Tab");
    await expect(job.dialog.getByRole("button", { name: "Delete job" })).toBeFocused();
    await page.keyboard.press("Enter");
    await expect(page).toHaveURL(/\/$/);
    expect((await request.get(`${restRoot("research")}/${created.id}`)).status()).toBe(404);
  } finally {
    await site.close();
  }
});

test("p pauses and resumes, ? lists the shortcuts, and keys typed in a field do nothing", async ({ page, request }) => {
  const site = await TestSite.start({ delayMs: [300, 600] });
  const created = await createResearch(request, uniqueName("Keys"), accountsCsv(site, 40), 1);
  try {
    const job = new JobPage(page, "research", created.id);
    await job.open();
    await expect(job.status).toHaveText(/Processing|Pending/);

    await page.keyboard.press("p");
    await expect(job.status).toHaveText(/Paused/);
    expect((await getJob(request, "research", created.id)).paused).toBe(true);

    // In the concurrency field, p is just a letter.
    const field = page.getByLabel("Items at a time");
    await field.focus();
    await page.keyboard.press("p");
    await expect(job.status).toHaveText(/Paused/);
    await field.blur();

    await expect(job.control("Resume")).toBeEnabled();
    await page.keyboard.press("p");
    await expect(job.status).toHaveText(/Processing/);

    await page.keyboard.press("?");
    const help = page.getByRole("dialog", { name: "Keyboard shortcuts" });
    await expect(help).toBeVisible();
    await expect(help).toContainText("Pause or resume the job");
    await page.keyboard.press("Escape");
    await expect(help).toHaveCount(0);

    // c asks before cancelling; Escape keeps the job.
    await expect(job.control("Pause")).toBeEnabled();
    await page.keyboard.press("c");
    await expect(job.dialog.getByRole("heading", { name: "Cancel this job?" })).toBeVisible();
    await page.keyboard.press("Escape");
    await expect(job.dialog).toHaveCount(0);
    expect((await getJob(request, "research", created.id)).cancelled).toBe(false);
  } finally {
    await cancelQuietly(request, "research", created.id);
    await site.close();
  }
});

test("the activity log grows with each action, and the concurrency follows the field", async ({ page, request }) => {
  const site = await TestSite.start({ delayMs: [300, 600] });
  const created = await createResearch(request, uniqueName("Logged"), accountsCsv(site, 40), 1);
  try {
    const job = new JobPage(page, "research", created.id);
    await job.open();
    await expect(events(page)).toHaveCount(1);
    await expect(events(page).first()).toContainText("created");

    await job.control("Pause").click();
    await expect(events(page)).toHaveCount(2);
    await expect(events(page).first()).toContainText("paused");
    await expect(events(page).first()).toContainText("by you, in jobdeck");

    await page.getByLabel("Items at a time").fill("4");
    await page.getByRole("button", { name: "Apply" }).click();
    await expect(page.getByRole("status").filter({ hasText: "Up to 4 at a time" })).toBeVisible();
    await expect(events(page).first()).toContainText("concurrency 1 → 4");
    expect((await getJob(request, "research", created.id)) as Job & { concurrency: number }).toMatchObject({
      concurrency: 4,
    });

    // An action from elsewhere shows up with the next refresh, with its source.
    await request.post(`${restRoot("research")}/${created.id}/resume`);
    await expect(events(page).first()).toContainText("resumed", { timeout: 10_000 });
    await expect(events(page).first()).toContainText("by the REST API");
  } finally {
    await cancelQuietly(request, "research", created.id);
    await site.close();
  }
});
