//! The HTML shell and the routes.

use leptos::prelude::*;
use leptos_meta::{provide_meta_context, MetaTags, Stylesheet, Title};
use leptos_router::components::{Route, Router, Routes, A};
use leptos_router::path;

use crate::pages::{accounts::AccountsPage, dashboard::Dashboard, preprocess::PreprocessPage, research::ResearchPage};

pub fn shell(options: LeptosOptions) -> impl IntoView {
    view! {
        <!DOCTYPE html>
        <html lang="en">
            <head>
                <meta charset="utf-8" />
                <meta name="viewport" content="width=device-width, initial-scale=1" />
                <AutoReload options=options.clone() />
                <HydrationScripts options />
                <MetaTags />
            </head>
            <body>
                <App />
            </body>
        </html>
    }
}

#[component]
pub fn App() -> impl IntoView {
    provide_meta_context();
    // Tests and people alike can tell the page is interactive once this is set.
    Effect::new(move |_| {
        if let Some(body) = document().body() {
            let _ = body.set_attribute("data-hydrated", "true");
        }
    });
    view! {
        <Stylesheet id="leptos" href="/pkg/jobdeck.css" />
        <Title text="jobdeck" />
        <Router>
            <header class="topbar">
                <A href="/" attr:class="brand">"jobdeck"</A>
                <span class="tagline">"batch jobs over account lists, under your control"</span>
            </header>
            <main class="page">
                <Routes fallback=|| view! { <p class="empty">"Page not found. " <a href="/">"Back to the dashboard"</a></p> }>
                    <Route path=path!("/") view=Dashboard />
                    <Route path=path!("/processing/:id") view=ResearchPage />
                    <Route path=path!("/processing/:id/accounts") view=AccountsPage />
                    <Route path=path!("/preprocess/progress/:id") view=PreprocessPage />
                </Routes>
            </main>
        </Router>
    }
}
