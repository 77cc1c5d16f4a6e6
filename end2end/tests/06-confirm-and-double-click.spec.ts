import { expect, test, type Request } from "@playwright/test";
import { cancelQuietly, getJob, restRoot, waitForJob } from "./fixtures/api";
import { accountsCsv, uniqueName } from "./fixtures/csv";
import { DashboardPage, type JobPage } from "./fixtures/pages";
import { TestSite } from "./fixtures/site";

let site: TestSite;
let job: JobPage;

test.beforeEach(async ({ page }) => {
  site = await TestSite.start({ delayMs: [600, 1200] });
  const dashboard = new DashboardPage(page);
  await dashboard.open();
  job = await dashboard.create("research", accountsCsv(site, 30), { name: uniqueName("Careful"), concurrency: 1 });
  await expect(job.status).toHaveText(/Processing/);
});

test.afterEach(async ({ request }) => {
  await cancelQuietly(request, "research", job.id);
  await site.close();
});

test("dismissing a confirmation leaves the job running, and refreshes keep it open", async ({ page, request }) => {
  await job.control("Cancel").click();
  await expect(job.dialog).toBeVisible();
  await expect(job.dialog.getByRole("button", { name: "Keep job" })).toBeFocused();

  // The page refreshes underneath (the counts move) while the dialog stays open.
  const before = await job.count("Completed");
  await expect.poll(() => job.count("Completed"), { timeout: 20_000 }).toBeGreaterThan(before);
  await expect(job.dialog).toBeVisible();

  await job.dialog.getByRole("button", { name: "Keep job" }).click();
  await expect(job.dialog).toHaveCount(0);
  await expect(job.control("Cancel")).toBeFocused();
  await expect(job.status).toHaveText(/Processing/);

  // Escape dismisses it too.
  await job.control("Cancel").click();
  await expect(job.dialog).toBeVisible();
  await page.keyboard.press("Escape");
  await expect(job.dialog).toHaveCount(0);

  const untouched = await getJob(request, "research", job.id);
  expect(untouched.status).toBe("processing");
  expect(untouched.cancelled).toBe(false);
  expect(untouched.paused).toBe(false);
  await expect(job.status).toHaveText(/Processing/);
});

test("a double click on Pause sends one action", async ({ page, request }) => {
  const actions: Request[] = [];
  page.on("request", (r) => {
    if (r.method() === "POST" && /\/api\/control_job/.test(r.url())) actions.push(r);
  });
  await job.control("Pause").dblclick();
  await expect(job.status).toHaveText(/Paused/);
  expect(actions).toHaveLength(1);
  const paused = await getJob(request, "research", job.id);
  expect(paused.paused).toBe(true);

  // Once the answer is in, the new button works as usual.
  await expect(job.control("Resume")).toBeEnabled();
  await job.control("Resume").click();
  await expect(job.status).toHaveText(/Processing/);
  expect(actions).toHaveLength(2);
});

test("the buttons say what they are doing while an action is on its way", async ({ page }) => {
  // Hold the action's answer back so the loading state can be seen.
  let release: () => void = () => undefined;
  const held = new Promise<void>((resolve) => (release = resolve));
  await page.route(/\/api\/control_job/, async (route) => {
    await held;
    await route.continue();
  });
  await job.control("Pause").click();
  const pausing = job.summary.getByRole("button", { name: "Pausing…" });
  await expect(pausing).toBeDisabled();
  await expect(job.control("Cancel")).toBeDisabled();
  release();
  await expect(job.status).toHaveText(/Paused/);
  await expect(pausing).toHaveCount(0);
});

test("an action the server refuses explains why in the page", async ({ page, request }) => {
  // Keep the page from learning of the change below, so it still offers Pause.
  await page.route(/\/api\/get_job/, (route) => route.abort());
  const res = await request.post(`${restRoot("research")}/${job.id}/cancel`);
  expect(res.status()).toBe(200);
  await job.control("Pause").click();
  await expect(job.alert).toContainText("can no longer be changed");
  await page.unroute(/\/api\/get_job/);
  await waitForJob(request, "research", job.id, (j) => j.cancelled);
  await expect(job.status).toHaveText(/Cancelled/, { timeout: 10_000 });
});
