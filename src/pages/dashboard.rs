use leptos::prelude::*;

use crate::api::list_jobs;
use crate::components::progress::Progress;

#[component]
pub fn Dashboard() -> impl IntoView {
    let jobs = Resource::new(|| (), |_| list_jobs());
    view! {
        <h1>"Jobs"</h1>
        <Suspense fallback=|| view! { <p>"Loading jobs…"</p> }>
            {move || Suspend::new(async move {
                match jobs.await {
                    Err(e) => view! { <p class="error" role="alert">{e.to_string()}</p> }.into_any(),
                    Ok(list) if list.is_empty() => view! {
                        <p class="empty" data-testid="empty-state">"No jobs yet. Upload a CSV to start one."</p>
                    }.into_any(),
                    Ok(list) => view! {
                        <ul class="job-list">
                            {list.into_iter().map(|job| {
                                let phase = job.phase();
                                view! {
                                    <li class="job-row">
                                        <a href=job.kind.page_url(job.id)>{job.name.clone()}</a>
                                        <span class=format!("badge badge-{}", phase.css())>{phase.icon()} " " {phase.label()}</span>
                                        <Progress job=job.clone() />
                                    </li>
                                }
                            }).collect_view()}
                        </ul>
                    }.into_any(),
                }
            })}
        </Suspense>
    }
}
