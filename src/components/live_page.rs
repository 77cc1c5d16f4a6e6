//! Pages kept fresh by the server's own rendering.
//!
//! A page is rendered by the server and arrives whole (it reads fine with JavaScript
//! off). In the browser only its interactive parts are hydrated, as islands: the
//! controls, the dialogs, the forms. [`LivePage`] wraps the rest of a job page: it
//! keeps the job fresh (the 3-second refresh of [`LiveJob`]), and whenever the job
//! changed it asks the server for the page again and brings the new HTML in place,
//! changing only the nodes that differ ("morphing"), so nothing flickers, focus stays
//! where it was and a text selection survives. The dashboard's list does the same
//! through [`PageRefresher`].
//!
//! The islands on a job page share the page's [`LiveJob`] ([`page_job`]), so a
//! button's answer shows at once in every island and starts that refresh. The morph
//! leaves an island in place as long as the same island stands there (it keeps itself
//! up to date), so an open dialog or a half-typed value is never replaced; an island
//! that is new in the page's HTML (the "Next step" of a preprocessing job that just
//! completed) is hydrated as it comes in.

use leptos::prelude::*;

use crate::components::live::LiveJob;
use crate::model::Job;

#[cfg(feature = "hydrate")]
thread_local! {
    /// The job of the page this browser shows, shared by its islands.
    static PAGE: std::cell::Cell<Option<LiveJob>> = const { std::cell::Cell::new(None) };
}

/// The page's [`LiveJob`] for an island about `job`: the one [`LivePage`] keeps fresh
/// when the island is on such a page (in the browser), else a job of its own.
pub fn page_job(job: Job) -> LiveJob {
    #[cfg(feature = "hydrate")]
    if let Some(live) = PAGE.with(|p| p.get()) {
        if live.job.try_with_untracked(|j| j.kind == job.kind && j.id == job.id) == Some(true) {
            return live;
        }
    }
    LiveJob::fixed(job)
}

/// The part of a job page that the server keeps up to date: `children` are rendered
/// by the server only; this island refreshes the job and, when it changed, the HTML.
#[island]
pub fn LivePage(job: Job, children: Children) -> impl IntoView {
    let live = LiveJob::new(job);
    #[cfg(feature = "hydrate")]
    {
        PAGE.with(|p| p.set(Some(live)));
        // Each change of the job (a refresh found news, an action answered) brings the
        // page's HTML.
        let refresher = PageRefresher::new(live.refresh_error);
        Effect::watch(move || live.tick.get(), move |_, _, _| refresher.run(), false);
    }
    view! {
        <div data-live-page="">{children()}</div>
        {refresh_note(live.refresh_error)}
    }
}

/// The note a live page shows while its refresh fails (it keeps retrying).
pub fn refresh_note(error: RwSignal<Option<String>>) -> impl IntoView {
    move || error.get().map(|e| view! { <p class="refresh-note">"Could not refresh (" {e} "); retrying."</p> })
}

/// Fetches the page's HTML and brings its live part in place; of several fetches on
/// their way, only the newest is put in place. A failure is put in `error`.
#[derive(Clone, Copy)]
#[cfg_attr(not(feature = "hydrate"), allow(dead_code))]
pub struct PageRefresher {
    asked: StoredValue<u64>,
    error: RwSignal<Option<String>>,
}

impl PageRefresher {
    pub fn new(error: RwSignal<Option<String>>) -> Self {
        Self { asked: StoredValue::new(0), error }
    }

    /// Starts one refresh of the page's HTML.
    pub fn run(self) {
        #[cfg(feature = "hydrate")]
        {
            self.asked.update_value(|n| *n += 1);
            let mine = self.asked.get_value();
            leptos::task::spawn_local(async move {
                match client::page_html().await {
                    Ok(html) if self.asked.try_get_value() == Some(mine) => {
                        client::bring_in(&html);
                        let _ = self.error.try_set(None);
                        AFTER.with(|after| after.borrow().iter().for_each(|f| f()));
                    }
                    Ok(_) => {}
                    Err(e) => {
                        let _ = self.error.try_set(Some(e));
                    }
                }
            });
        }
    }
}

#[cfg(feature = "hydrate")]
thread_local! {
    /// What islands asked to run after each morph (the bulk bar puts its choices back).
    static AFTER: std::cell::RefCell<Vec<Box<dyn Fn()>>> = std::cell::RefCell::new(Vec::new());
}

/// Runs `f` after every refresh has brought the server's HTML in (in the browser).
pub fn after_refresh(f: impl Fn() + 'static) {
    #[cfg(feature = "hydrate")]
    AFTER.with(|after| after.borrow_mut().push(Box::new(f)));
    #[cfg(not(feature = "hydrate"))]
    let _ = f;
}

#[cfg(feature = "hydrate")]
mod client {
    use leptos::prelude::{document, window};
    use leptos::wasm_bindgen::{JsCast, JsValue};
    use wasm_bindgen_futures::JsFuture;
    use web_sys::{Element, Node};

    /// This page's HTML, as the server renders it now.
    pub async fn page_html() -> Result<String, String> {
        let href = window().location().href().map_err(|_| "no address".to_string())?;
        let answer = JsFuture::from(window().fetch_with_str(&href))
            .await
            .map_err(|_| "the server did not answer".to_string())?;
        let response: web_sys::Response = answer.dyn_into().map_err(|_| "no answer".to_string())?;
        if !response.ok() {
            return Err(format!("the server answered {}", response.status()));
        }
        let text = response.text().map_err(|_| "no page".to_string())?;
        let text = JsFuture::from(text).await.map_err(|_| "the page did not arrive".to_string())?;
        text.as_string().ok_or_else(|| "no page".to_string())
    }

    /// Puts the live part of `html` in place of the one on screen.
    pub fn bring_in(html: &str) {
        let Ok(parser) = web_sys::DomParser::new() else { return };
        let Ok(fresh) = parser.parse_from_string(html, web_sys::SupportedType::TextHtml) else { return };
        let (Ok(Some(new)), Ok(Some(old))) =
            (fresh.query_selector("[data-live-page]"), document().query_selector("[data-live-page]"))
        else {
            return;
        };
        morph_children(&old, &new);
    }

    fn children(node: &Node) -> Vec<Node> {
        let list = node.child_nodes();
        (0..list.length()).filter_map(|i| list.item(i)).collect()
    }

    fn morph_children(old: &Node, new: &Node) {
        let (olds, news) = (children(old), children(new));
        for (i, n) in news.iter().enumerate() {
            match olds.get(i) {
                Some(o) => morph(o, n),
                None => {
                    if let Ok(copy) = document().import_node_with_deep(n, true) {
                        let _ = old.append_child(&copy);
                        hydrate_islands_in(&copy);
                    }
                }
            }
        }
        for o in olds.iter().skip(news.len()) {
            let _ = old.remove_child(o);
        }
    }

    fn morph(old: &Node, new: &Node) {
        let same_kind = old.node_type() == new.node_type() && old.node_name() == new.node_name();
        if !same_kind {
            replace(old, new);
            return;
        }
        match (old.dyn_ref::<Element>(), new.dyn_ref::<Element>()) {
            (Some(o), Some(n)) => {
                if o.tag_name().eq_ignore_ascii_case("leptos-island") {
                    // An island of a live page keeps itself up to date from the page's
                    // job: the same island stays, with whatever it has open.
                    if o.get_attribute("data-component") != n.get_attribute("data-component") {
                        replace(old, new);
                    }
                    return;
                }
                // A keyed element (a dashboard row) that now stands for another thing
                // is replaced whole, islands and all.
                if o.get_attribute("data-key") != n.get_attribute("data-key") {
                    replace(old, new);
                    return;
                }
                sync_attributes(o, n);
                morph_children(old, new);
            }
            _ => {
                if old.node_value() != new.node_value() {
                    old.set_node_value(new.node_value().as_deref());
                }
            }
        }
    }

    fn replace(old: &Node, new: &Node) {
        let Some(parent) = old.parent_node() else { return };
        if let Ok(copy) = document().import_node_with_deep(new, true) {
            let _ = parent.replace_child(&copy, old);
            hydrate_islands_in(&copy);
        }
    }

    fn sync_attributes(old: &Element, new: &Element) {
        let names = |e: &Element| e.get_attribute_names().iter().filter_map(|n| n.as_string()).collect::<Vec<_>>();
        for name in names(old) {
            if !new.has_attribute(&name) {
                let _ = old.remove_attribute(&name);
            }
        }
        for name in names(new) {
            let value = new.get_attribute(&name).unwrap_or_default();
            if old.get_attribute(&name).as_deref() != Some(value.as_str()) {
                let _ = old.set_attribute(&name, &value);
            }
        }
    }

    /// Hydrates the islands in a part of the page that just came in, through the
    /// function the islands script leaves for it.
    fn hydrate_islands_in(node: &Node) {
        let Some(el) = node.dyn_ref::<Element>() else { return };
        let mut islands = Vec::new();
        if el.tag_name().eq_ignore_ascii_case("leptos-island") {
            islands.push(el.clone());
        }
        if let Ok(list) = el.query_selector_all("leptos-island") {
            islands
                .extend((0..list.length()).filter_map(|i| list.item(i)).filter_map(|n| n.dyn_into::<Element>().ok()));
        }
        let Ok(hydrate) = js_sys::Reflect::get(&window(), &JsValue::from_str("__hydrateIsland")) else { return };
        let Some(hydrate) = hydrate.dyn_ref::<js_sys::Function>() else { return };
        for island in islands {
            let id = island.get_attribute("data-component").unwrap_or_default();
            let _ = hydrate.call2(&JsValue::NULL, &island, &JsValue::from_str(&id));
        }
    }
}
