import { expect, test, type APIRequestContext, type Page } from "@playwright/test";
import { cancelQuietly, restRoot, type Job, type Kind } from "./fixtures/api";
import { openHydrated } from "./fixtures/app";
import { accountsCsv, uniqueName } from "./fixtures/csv";
import { DashboardPage, JobPage } from "./fixtures/pages";
import { TestSite } from "./fixtures/site";

/** Every error the page logs or throws, to be checked at the end. */
function collectErrors(page: Page): string[] {
  const errors: string[] = [];
  page.on("console", (msg) => {
    if (msg.type() === "error" || msg.type() === "warning") errors.push(`${msg.type()}: ${msg.text()}`);
  });
  page.on("pageerror", (e) => errors.push(`pageerror: ${e.message}`));
  return errors;
}

/** Starts a full research job of `count` accounts of `site` through the REST API. */
async function startResearch(request: APIRequestContext, site: TestSite, name: string, count: number): Promise<number> {
  const res = await request.post(restRoot("research"), {
    multipart: {
      file: { name: "accounts.csv", mimeType: "text/csv", buffer: Buffer.from(accountsCsv(site, count)) },
      name,
      concurrency: "1",
    },
  });
  expect(res.status()).toBe(201);
  return ((await res.json()) as Job).id;
}

// A job page is rendered by the server and brought up to date in place: what the
// server renders later replaces what changed, with no reload, while the controls keep
// working and keep what they have open.
test("a running job's page follows the server's rendering in place, and its controls keep working", async ({
  page,
  request,
}) => {
  const site = await TestSite.start({ delayMs: [250, 400] });
  let id = -1;
  try {
    const errors = collectErrors(page);
    id = await startResearch(request, site, uniqueName("Followed"), 6);

    const job = new JobPage(page, "research", id);
    await openHydrated(page, `/processing/${id}`);
    // A reload would drop this marker.
    await page.evaluate(() => ((window as unknown as { __sameDocument: boolean }).__sameDocument = true));

    // The cancel dialog stays open through the refreshes that change the banner below it.
    await job.control("Cancel").click();
    const dialog = page.getByRole("dialog");
    await expect(dialog.getByRole("heading", { name: "Cancel this job?" })).toBeVisible();
    const before = await job.summary.textContent();
    await expect(job.summary).not.toHaveText(before ?? "", { timeout: 15_000 });
    await expect(dialog).toBeVisible();
    await dialog.getByRole("button", { name: "Keep job" }).click();
    await expect(dialog).toBeHidden();

    // The accounts section and the banner follow the job to its end.
    await expect(job.status).toHaveText(/Completed/, { timeout: 60_000 });
    await expect(page.getByText("6 accounts: 6 researched, 0 failed, 0 in progress, 0 waiting.")).toBeVisible();
    await expect(job.summary).toContainText("6");
    await expect(page.getByRole("region", { name: "Activity" })).toContainText(/completed/i);
    expect(await page.evaluate(() => (window as unknown as { __sameDocument?: boolean }).__sameDocument)).toBe(true);

    // The controls that were there from the start act on the finished job.
    await job.confirm("Delete Job");
    await page.waitForURL((url) => url.pathname === "/");
    id = -1;
    expect(errors).toEqual([]);
  } finally {
    if (id > 0) await cancelQuietly(request, "research", id);
    await site.close();
  }
});

// Every page hydrates its islands without a complaint in the console.
test("every page hydrates without an error", async ({ page, request }) => {
  const site = await TestSite.start();
  const created: [Kind, number][] = [];
  try {
    const researchId = await startResearch(request, site, uniqueName("Quiet"), 2);
    created.push(["research", researchId]);
    const preprocess = await request.post(restRoot("preprocess"), {
      multipart: {
        file: { name: "names.csv", mimeType: "text/csv", buffer: Buffer.from("Company\nAcme Inc.\nGlobex GmbH\n") },
      },
    });
    expect(preprocess.status()).toBe(201);
    const preprocessId = ((await preprocess.json()) as Job).id;
    created.push(["preprocess", preprocessId]);

    const errors = collectErrors(page);
    for (const path of [
      "/",
      `/processing/${researchId}`,
      `/processing/${researchId}/accounts`,
      `/preprocess/progress/${preprocessId}`,
    ]) {
      await openHydrated(page, path);
      await expect(page.getByRole("heading", { level: 1 })).toBeVisible();
    }
    expect(errors).toEqual([]);
  } finally {
    for (const [kind, id] of created) await cancelQuietly(request, kind, id);
    await site.close();
  }
});

// The dashboard's rows are rendered by the server too: a refresh that brings a new job
// to the top keeps the person's choice on the job they chose, and each row's controls
// follow their job.
test("the dashboard keeps choices on their jobs and row controls on their job's state through refreshes", async ({
  page,
  request,
}) => {
  const site = await TestSite.start({ delayMs: [250, 400] });
  const created: [Kind, number][] = [];
  const start = async (name: string, count: number): Promise<void> => {
    created.push(["research", await startResearch(request, site, name, count)]);
  };
  try {
    const errors = collectErrors(page);
    const chosenName = uniqueName("Chosen");
    await start(chosenName, 6);
    const dashboard = new DashboardPage(page);
    await dashboard.open();
    await page.evaluate(() => ((window as unknown as { __sameDocument: boolean }).__sameDocument = true));
    const chosen = dashboard.row(chosenName);
    await chosen.getByRole("checkbox").check();
    const bar = page.getByRole("toolbar", { name: "Act on several jobs" });
    await expect(bar).toContainText("1 chosen");

    // A new job comes in above it: the choice stays with the chosen job.
    const newerName = uniqueName("Newer");
    await start(newerName, 1);
    const newer = dashboard.row(newerName);
    await expect(newer).toBeVisible({ timeout: 15_000 });
    await expect(newer.getByRole("checkbox")).not.toBeChecked();
    await expect(chosen.getByRole("checkbox")).toBeChecked();
    await expect(bar).toContainText("1 chosen");

    // The chosen job finishes: its row's controls become Delete Job.
    await expect(chosen).toContainText("Completed", { timeout: 60_000 });
    await expect(chosen.getByRole("button", { name: "Delete Job" })).toBeVisible();
    await expect(chosen.getByRole("button", { name: "Pause" })).toHaveCount(0);
    await expect(chosen.getByRole("checkbox")).toBeChecked();
    expect(await page.evaluate(() => (window as unknown as { __sameDocument?: boolean }).__sameDocument)).toBe(true);
    expect(errors).toEqual([]);
  } finally {
    for (const [kind, id] of created) await cancelQuietly(request, kind, id);
    await site.close();
  }
});

// The activity log is rendered by the server a page at a time; older pages are links.
test("the activity log pages through older events with links", async ({ page, request }) => {
  const site = await TestSite.start({ delayMs: [2000, 3000] });
  let id = -1;
  try {
    id = await startResearch(request, site, uniqueName("Long log"), 3);
    const root = `${restRoot("research")}/${id}`;
    // 1 created + 52 paused/resumed + 1 paused: more than the log's page of 50.
    for (let i = 0; i < 26; i++) {
      expect((await request.post(`${root}/pause`)).status()).toBe(200);
      expect((await request.post(`${root}/resume`)).status()).toBe(200);
    }
    expect((await request.post(`${root}/pause`)).status()).toBe(200);
    await openHydrated(page, `/processing/${id}`);
    const log = page.getByRole("region", { name: "Activity" });
    await expect(log.getByRole("listitem")).toHaveCount(50);
    await expect(log.getByRole("listitem").first()).toContainText("paused");
    await expect(log.getByRole("link", { name: "← Newest" })).toHaveCount(0);

    await log.getByRole("link", { name: "Show older" }).click();
    await expect(page).toHaveURL(/before=\d+#activity$/);
    await expect(log.getByRole("listitem").last()).toContainText("created");
    await expect(log.getByRole("link", { name: "Show older" })).toHaveCount(0);

    await log.getByRole("link", { name: "← Newest" }).click();
    await expect(page).not.toHaveURL(/before=/);
    await expect(log.getByRole("listitem")).toHaveCount(50);
  } finally {
    if (id > 0) await cancelQuietly(request, "research", id);
    await site.close();
  }
});
