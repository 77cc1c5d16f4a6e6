import { expect, test, type APIRequestContext } from "@playwright/test";
import { cancelQuietly, getJob, restRoot, waitForJob, type Job } from "./fixtures/api";
import { csv, uniqueName } from "./fixtures/csv";
import { RATE_LIMIT_WORD } from "./fixtures/llm";
import { openHydrated } from "./fixtures/app";
import { JobPage } from "./fixtures/pages";
import { TestSite } from "./fixtures/site";

// SPEC section 8, automatic control: what keeps a job in hand while nobody watches.

async function createResearch(request: APIRequestContext, name: string, body: string): Promise<Job> {
  const res = await request.post(restRoot("research"), {
    multipart: {
      file: { name: "list.csv", mimeType: "text/csv", buffer: Buffer.from(body) },
      name,
      concurrency: "1",
    },
  });
  expect(res.status()).toBe(201);
  return (await res.json()) as Job;
}

/** The activity log's entries on a job page. */
const events = (page: import("@playwright/test").Page) =>
  page.getByRole("region", { name: "Activity" }).getByRole("listitem");

test("an LLM rate limit shows a live countdown, and Resume now carries on at once", async ({ page, request }) => {
  const site = await TestSite.start();
  const tag = `${RATE_LIMIT_WORD}${Date.now().toString(36)}`;
  try {
    // The fake LLM endpoint refuses the first request about this account with a
    // ten-minute Retry-After.
    const body = csv(["Company", "Website"], [[`Acme ${tag}`, site.url(1)], ["Second Co", site.url(2)]]);
    const created = await createResearch(request, uniqueName("Rate limited"), body);
    const limited = await waitForJob(request, "research", created.id, (j) => j.paused);
    expect(limited.pausedReason).toContain("429");
    expect(limited.resumeAt).not.toBeNull();

    const job = new JobPage(page, "research", created.id);
    await job.open();
    await expect(job.status).toContainText("Paused");
    await expect(job.summary).toContainText("LLM rate limit (HTTP 429)");
    const countdown = job.summary.getByRole("timer");
    await expect(countdown).toHaveText(/^(9|10) min \d\d s$/);
    // It counts down while the page is open, without a reload.
    const first = await countdown.textContent();
    await expect(countdown).not.toHaveText(first ?? "", { timeout: 5_000 });

    await job.summary.getByRole("button", { name: "Resume now" }).click();
    await expect(countdown).toHaveCount(0);
    await expect(job.status).toContainText("Completed", { timeout: 30_000 });
    const done = await getJob(request, "research", created.id);
    expect([done.completed, done.failed, done.paused]).toEqual([2, 0, false]);
    await expect(events(page).filter({ hasText: "auto-paused" })).toHaveCount(1);
    await expect(events(page).filter({ hasText: "resumed" }).first()).toContainText("in jobdeck");
  } finally {
    await site.close();
  }
});

test("a schedule is set, shown and cleared on the job page", async ({ page, request }) => {
  const site = await TestSite.start({ delayMs: [800, 1200] });
  let created: Job | undefined;
  try {
    const rows = Array.from({ length: 40 }, (_, i) => [`Scheduled ${i + 1}`, site.url(i + 1)]);
    created = await createResearch(request, uniqueName("Scheduled"), csv(["Company", "Website"], rows));
    const job = new JobPage(page, "research", created.id);
    await job.open();
    const schedule = page.getByRole("region", { name: "Schedule" });
    await expect(schedule.getByTestId("schedule-summary")).toHaveText("Nothing scheduled.");

    // Times are UTC in the fields, as everywhere in jobdeck.
    const field = (t: Date) => t.toISOString().slice(0, 16);
    const pauseAt = new Date(Date.now() + 2 * 3600_000);
    const resumeAt = new Date(Date.now() + 5 * 3600_000);
    await schedule.getByLabel("Pause at (UTC)").fill(field(pauseAt));
    await schedule.getByLabel("Resume at (UTC)").fill(field(resumeAt));
    await schedule.getByRole("button", { name: "Save schedule" }).click();
    await expect(schedule.getByRole("status")).toHaveText("Schedule saved.");
    await expect(schedule.getByTestId("schedule-summary")).toContainText("Pauses at");
    await expect(schedule.getByTestId("schedule-summary")).toContainText("Resumes at");
    const saved = await getJob(request, "research", created.id);
    const minute = (t: string | null) => (t ? new Date(t).toISOString().slice(0, 16) : null);
    expect(minute((saved as Job & { scheduledPauseAt: string | null }).scheduledPauseAt)).toBe(field(pauseAt));
    expect(minute((saved as Job & { scheduledResumeAt: string | null }).scheduledResumeAt)).toBe(field(resumeAt));
    await expect(events(page).first()).toContainText("scheduled");

    // A time that has passed is refused, in the page.
    await schedule.getByLabel("Pause at (UTC)").fill(field(new Date(Date.now() - 3600_000)));
    await schedule.getByRole("button", { name: "Save schedule" }).click();
    await expect(schedule.getByRole("alert")).toContainText("the pause time must be in the future");

    await schedule.getByRole("button", { name: "Clear" }).click();
    await expect(schedule.getByRole("status")).toHaveText("Schedule cleared.");
    await expect(schedule.getByTestId("schedule-summary")).toHaveText("Nothing scheduled.");
    const cleared = (await getJob(request, "research", created.id)) as Job & { scheduledPauseAt: string | null };
    expect(cleared.scheduledPauseAt).toBeNull();
    await expect(events(page).first()).toContainText("schedule cleared");
  } finally {
    if (created) await cancelQuietly(request, "research", created.id);
    await site.close();
  }
});

test("a job that finishes is announced in the browser once notifications are on", async ({ page, request }) => {
  const site = await TestSite.start({ delayMs: [4000, 4000] });
  // Records what the page asks the browser to show, in place of the real notifications.
  await page.addInitScript(() => {
    const shown: { title: string; body: string }[] = [];
    (window as unknown as { shown: typeof shown }).shown = shown;
    class Recorded {
      static permission = "granted";
      static requestPermission() {
        return Promise.resolve("granted");
      }
      constructor(title: string, options?: { body?: string }) {
        shown.push({ title, body: options?.body ?? "" });
      }
    }
    (window as unknown as { Notification: unknown }).Notification = Recorded;
  });
  try {
    const name = uniqueName("Announced");
    const created = await createResearch(request, name, csv(["Company", "Website"], [["One", site.url(1)]]));
    const job = new JobPage(page, "research", created.id);
    await job.open();
    await job.summary.getByRole("button", { name: "Notify me in this browser" }).click();
    await expect(job.summary.getByTestId("browser-notify")).toContainText("Browser notifications on");
    await expect(job.status).toContainText("Completed", { timeout: 30_000 });
    const shown = () => page.evaluate(() => (window as unknown as { shown: { title: string }[] }).shown);
    await expect.poll(async () => (await shown()).map((n) => n.title)).toEqual([`${name}: completed`]);

    // The choice holds on the next page, and can be turned off.
    await openHydrated(page, "/");
    await expect(page.getByTestId("browser-notify")).toContainText("Browser notifications on");
    await page.getByTestId("browser-notify").getByRole("button", { name: "Turn off" }).click();
    await expect(page.getByRole("button", { name: "Notify me in this browser" })).toBeVisible();
  } finally {
    await site.close();
  }
});
