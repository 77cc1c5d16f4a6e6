import { expect, test, type APIRequestContext } from "@playwright/test";
import { restRoot, waitForJob, type Job, type Kind } from "./fixtures/api";
import { openHydrated } from "./fixtures/app";
import { csv, uniqueName } from "./fixtures/csv";
import { DashboardPage, JobPage } from "./fixtures/pages";
import { TestSite } from "./fixtures/site";

// SPEC section 16: what a job shows says what happened, in a person's words.

async function create(request: APIRequestContext, kind: Kind, name: string, body: string): Promise<Job> {
  const res = await request.post(restRoot(kind), {
    multipart: { file: { name: "list.csv", mimeType: "text/csv", buffer: Buffer.from(body) }, name },
  });
  expect(res.status(), await res.text()).toBe(201);
  return (await res.json()) as Job;
}

test("a job whose every account failed reads Failed; one with some failures says how many", async ({
  page,
  request,
}) => {
  const site = await TestSite.start();
  const tag = uniqueName("Phases");
  try {
    const gone = `${site.origin()}/gone`;
    const allFailed = await create(request, "research", `${tag} all`, csv(["Company", "Website"], [["A", gone], ["B", gone]]));
    // One good site, one where nothing listens.
    const someFailed = await create(
      request,
      "research",
      `${tag} some`,
      csv(["Company", "Website"], [["Good", site.url(1)], ["Down", "http://127.0.0.1:9/"]]),
    );
    await waitForJob(request, "research", allFailed.id, (j) => j.status === "completed");
    await waitForJob(request, "research", someFailed.id, (j) => j.status === "completed");

    // The dashboard's Failed filter finds the job whose every account failed, only it.
    await openHydrated(page, `/?status=failed&q=${encodeURIComponent(tag)}`);
    const dashboard = new DashboardPage(page);
    await expect(dashboard.row(`${tag} all`).getByTestId("status-badge")).toHaveText(/Failed/);
    await expect(dashboard.row(`${tag} some`)).toHaveCount(0);

    // The other reads Completed with "1 failed" beside it, on its page too.
    const job = new JobPage(page, "research", someFailed.id);
    await job.open();
    await expect(job.status).toHaveText(/Completed/);
    await expect(job.summary.getByTestId("failed-note")).toHaveText("1 failed");

    // The unreachable site's account says so in one short sentence.
    await openHydrated(page, `/processing/${someFailed.id}/accounts?status=failed`);
    const error = page.getByText(/could not reach 127\.0\.0\.1/).first();
    await expect(error).toContainText("could not reach 127.0.0.1 (connection refused)");
    expect((await error.innerText()).length).toBeLessThan(130);
    await expect(page.locator("body")).not.toContainText("error sending request");
  } finally {
    await site.close();
  }
});

test("uploads that cannot work are refused at once; foreign headers are understood", async ({ page }) => {
  const site = await TestSite.start();
  try {
    const dashboard = new DashboardPage(page);
    await dashboard.open();
    await dashboard.upload("preprocess", "foo,bar,baz\n1,2,3\n", { name: uniqueName("Nothing to clean") });
    const form = dashboard.form("preprocess");
    await expect(form.getByRole("alert")).toContainText("columns found: foo, bar, baz");
    await expect(page).toHaveURL(/\/$/);

    // German headers, semicolons.
    const job = await dashboard.create("research", `Firma;Webseite\nAcme;${site.url(1)}\n`, { name: uniqueName("Firma") });
    await expect(job.status).toHaveText(/Completed/, { timeout: 60_000 });
    expect(site.count("/site/1")).toBe(1);
  } finally {
    await site.close();
  }
});

test("after a delete the dashboard says which job went", async ({ page, request }) => {
  const name = uniqueName("Gone soon");
  const created = await create(request, "preprocess", name, "Company\nAcme\n");
  await waitForJob(request, "preprocess", created.id, (j) => j.status === "completed");
  const job = new JobPage(page, "preprocess", created.id);
  await job.open();
  await job.confirm("Delete Job");
  await expect(page).toHaveURL(/\/$/);
  await expect(page.getByTestId("deleted-note")).toContainText(`Deleted “${name}”.`);
});

test.describe("on a phone", () => {
  test.use({ viewport: { width: 375, height: 740 } });

  test("New job reaches the form in one step, and the keyboard alone starts a job", async ({ page }) => {
    const dashboard = new DashboardPage(page);
    await dashboard.open();
    const newJob = page.getByRole("link", { name: "New job" });
    await expect(newJob).toBeInViewport();
    await newJob.focus();
    await page.keyboard.press("Enter");
    await expect(dashboard.form("research")).toBeInViewport();
    // From there, Tab reaches the research form's fields and its button.
    await page.keyboard.press("Tab");
    const file = dashboard.form("research").getByLabel("CSV file");
    await expect(file).toBeFocused();
    await file.setInputFiles({ name: "k.csv", mimeType: "text/csv", buffer: Buffer.from("Company\nKeyboard Co\n") });
    const start = dashboard.form("research").getByRole("button", { name: /^Start/ });
    for (let i = 0; i < 8 && !(await start.evaluate((el) => el === document.activeElement)); i++) {
      await page.keyboard.press("Tab");
    }
    await expect(start).toBeFocused();
    await page.keyboard.press("Enter");
    await page.waitForURL(/\/processing\/\d+$/);
  });

  test("the bulk bar stays in view while a row far down is chosen", async ({ page, request }) => {
    const tag = uniqueName("Far down");
    for (let i = 1; i <= 8; i++) await create(request, "preprocess", `${tag} ${i}`, "Company\nAcme\n");
    await openHydrated(page, `/?q=${encodeURIComponent(tag)}`);
    const last = page.getByRole("checkbox", { name: `Choose ${tag} 1`, exact: true });
    await last.scrollIntoViewIfNeeded();
    await last.check();
    const bar = page.getByRole("toolbar", { name: "Act on several jobs" });
    await expect(bar).toBeInViewport();
    await expect(bar).toContainText("1 chosen");
    // Only what applies to a finished job is offered.
    await expect(bar.getByRole("button", { name: "Delete" })).toBeVisible();
    await expect(bar.getByRole("button", { name: "Pause" })).toHaveCount(0);
  });
});
