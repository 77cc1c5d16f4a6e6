import http from "node:http";
import type { AddressInfo } from "node:net";
import { expect, test } from "@playwright/test";
import { restRoot, waitForJob } from "./fixtures/api";
import { csv, uniqueName } from "./fixtures/csv";
import { JobPage } from "./fixtures/pages";

// SPEC section 11: a page of another site, open in the operator's browser, posts a
// form at jobdeck. The form is the classic one: `text/plain`, which the browser sends
// to any address without asking, shaped so the body reads as JSON. Chromium sends it
// with the other page's Origin, and jobdeck refuses it; the same delete from jobdeck's
// own page goes through.
test("a form on another site's page cannot delete a job, and jobdeck's own page can", async ({
  page,
  request,
  baseURL,
}) => {
  const name = uniqueName("Cross-site target");
  const created = await request.post(restRoot("preprocess"), {
    multipart: {
      file: { name: "a.csv", mimeType: "text/csv", buffer: Buffer.from(csv(["Company"], [["Acme"], ["Beta"]])) },
      name,
    },
  });
  expect(created.status()).toBe(201);
  const { id } = (await created.json()) as { id: number };
  await waitForJob(request, "preprocess", id, (j) => j.status === "completed");

  const target = new URL("/api/jobs/bulk", baseURL).href;
  const json = `{"action":"delete","jobs":[{"kind":"preprocess","id":${id}}],"pad":"`;
  const prize = http.createServer((_req, res) => {
    res.writeHead(200, { "content-type": "text/html; charset=utf-8" });
    res.end(`<!doctype html><title>You won</title>
      <form method="post" action="${target}" enctype="text/plain">
        <input type="hidden" name='${json}' value='"}'>
        <button type="submit">Claim your prize</button>
      </form>`);
  });
  await new Promise<void>((resolve) => prize.listen(0, "127.0.0.1", () => resolve()));
  try {
    const port = (prize.address() as AddressInfo).port;
    await page.goto(`http://127.0.0.1:${port}/`);
    const [answer] = await Promise.all([
      page.waitForResponse((r) => r.url() === target),
      page.getByRole("button", { name: "Claim your prize" }).click(),
    ]);
    expect(answer.status()).toBe(403);
    await expect(page.locator("body")).toContainText("another");
    expect((await request.get(`${restRoot("preprocess")}/${id}`)).status(), "the job is still there").toBe(200);

    // From jobdeck's own page the same delete works.
    const job = new JobPage(page, "preprocess", id);
    await job.open();
    await job.control("Delete Job").click();
    await job.dialog.getByRole("button", { name: "Delete job" }).click();
    await expect(page).toHaveURL(/\/$/);
    expect((await request.get(`${restRoot("preprocess")}/${id}`)).status()).toBe(404);
  } finally {
    await new Promise((resolve) => prize.close(resolve));
  }
});
