use leptos::prelude::*;

#[component]
pub fn ResearchPage() -> impl IntoView {
    view! { <h1>"Full research job"</h1> }
}
