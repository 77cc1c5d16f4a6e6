//! Three reference apps, one per feature (see Cargo.toml). Only their browser build is
//! measured; none of them is ever served.

use leptos::prelude::*;

#[cfg(any(feature = "served", feature = "islands"))]
mod served {
    use leptos::prelude::*;
    use serde::{Deserialize, Serialize};

    #[derive(Clone, PartialEq, Serialize, Deserialize)]
    pub struct Task {
        pub id: i64,
        pub name: String,
        pub done: u64,
        pub paused: bool,
    }

    #[server]
    pub async fn pause(id: i64) -> Result<Task, ServerFnError> {
        Ok(Task { id, name: String::new(), done: 0, paused: true })
    }

    /// A button that calls the server and shows the answer or the error.
    pub fn pause_button(id: i64) -> impl IntoView {
        let task = RwSignal::new(None::<Task>);
        let error = RwSignal::new(None::<String>);
        let click = move |_| {
            leptos::task::spawn_local(async move {
                match pause(id).await {
                    Ok(t) => task.set(Some(t)),
                    Err(e) => error.set(Some(e.to_string())),
                }
            })
        };
        view! {
            <button on:click=click disabled=move || task.with(|t| t.as_ref().is_some_and(|t| t.paused))>
                "Pause"
            </button>
            <p>{move || task.with(|t| t.as_ref().map(|t| format!("{} done", t.done)))}</p>
            <p role="alert">{move || error.get()}</p>
        }
    }
}

#[cfg(feature = "islands")]
#[island]
fn Pause(id: i64) -> impl IntoView {
    served::pause_button(id)
}

#[cfg(feature = "islands")]
#[component]
pub fn App() -> impl IntoView {
    view! {
        <main>
            <h1>"A task"</h1>
            <Pause id=1 />
        </main>
    }
}

#[cfg(not(feature = "islands"))]
#[component]
pub fn App() -> impl IntoView {
    use leptos_meta::{provide_meta_context, Title};
    use leptos_router::components::{Route, Router, Routes};
    use leptos_router::path;
    provide_meta_context();
    view! {
        <Title text="floor" />
        <Router>
            <main>
                <Routes fallback=|| "Not found">
                    <Route path=path!("/") view=Home />
                </Routes>
            </main>
        </Router>
    }
}

#[cfg(not(feature = "islands"))]
#[component]
fn Home() -> impl IntoView {
    let count = RwSignal::new(0);
    view! {
        <h1>"Welcome"</h1>
        <button on:click=move |_| *count.write() += 1>"Clicked " {count} " times"</button>
        {extra()}
    }
}

/// The server-calling part, in the app that has it.
#[cfg(feature = "served")]
fn extra() -> impl IntoView {
    served::pause_button(1)
}

#[cfg(all(not(feature = "served"), not(feature = "islands")))]
fn extra() -> impl IntoView {}

#[wasm_bindgen::prelude::wasm_bindgen]
pub fn hydrate() {
    console_error_panic_hook::set_once();
    #[cfg(feature = "islands")]
    leptos::mount::hydrate_islands();
    #[cfg(not(feature = "islands"))]
    leptos::mount::hydrate_body(App);
}
