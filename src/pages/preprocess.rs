use leptos::prelude::*;

#[component]
pub fn PreprocessPage() -> impl IntoView {
    view! { <h1>"Preprocessing job"</h1> }
}
