//! Type erasure that keeps the browser bundle small.
//!
//! `into_any()` stores, for every erased view type, a pointer to that type's *async*
//! hydration as well as its ordinary one. The async path is only ever taken by lazily
//! loaded routes (jobdeck has none), but a function pointer keeps it in the bundle: a
//! second copy of the hydration code of every erased tree, about a fifth of the wasm.
//! [`erase`] wraps the view in [`SyncHydrated`], which forwards everything but leaves
//! async hydration to the trait's default (the ordinary hydration, already compiled),
//! then erases that. Server rendering and client rendering are unchanged.

use leptos::prelude::*;
use leptos::tachys::html::attribute::any_attribute::AnyAttribute;
use leptos::tachys::html::attribute::Attribute;
use leptos::tachys::hydration::Cursor;
use leptos::tachys::ssr::StreamBuilder;
use leptos::tachys::view::add_attr::AddAnyAttr;
use leptos::tachys::view::{Position, PositionState, Render, RenderHtml};

/// Erases a view's type without compiling its async hydration. Use it wherever
/// `.into_any()` would be used.
pub fn erase<V>(view: V) -> AnyView
where
    V: RenderHtml + Send + 'static,
{
    SyncHydrated(view).into_any()
}

/// [`erase`] as a method, in place of `.into_any()`.
pub trait Erase {
    fn erased(self) -> AnyView;
}

impl<V> Erase for V
where
    V: RenderHtml + Send + 'static,
{
    fn erased(self) -> AnyView {
        erase(self)
    }
}

/// A view that hydrates the ordinary way even when asked to hydrate asynchronously.
pub struct SyncHydrated<V>(pub V);

impl<V: Render> Render for SyncHydrated<V> {
    type State = V::State;

    fn build(self) -> Self::State {
        self.0.build()
    }

    fn rebuild(self, state: &mut Self::State) {
        self.0.rebuild(state);
    }
}

impl<V: AddAnyAttr> AddAnyAttr for SyncHydrated<V> {
    type Output<SomeNewAttr: Attribute> = SyncHydrated<V::Output<SomeNewAttr>>;

    fn add_any_attr<NewAttr: Attribute>(self, attr: NewAttr) -> Self::Output<NewAttr>
    where
        Self::Output<NewAttr>: RenderHtml,
    {
        SyncHydrated(self.0.add_any_attr(attr))
    }
}

impl<V: RenderHtml> RenderHtml for SyncHydrated<V> {
    type AsyncOutput = SyncHydrated<V::AsyncOutput>;
    type Owned = SyncHydrated<V::Owned>;

    const MIN_LENGTH: usize = V::MIN_LENGTH;
    const EXISTS: bool = V::EXISTS;

    fn dry_resolve(&mut self) {
        self.0.dry_resolve();
    }

    async fn resolve(self) -> Self::AsyncOutput {
        SyncHydrated(self.0.resolve().await)
    }

    fn html_len(&self) -> usize {
        self.0.html_len()
    }

    fn to_html_with_buf(
        self,
        buf: &mut String,
        position: &mut Position,
        escape: bool,
        mark_branches: bool,
        extra_attrs: Vec<AnyAttribute>,
    ) {
        self.0.to_html_with_buf(buf, position, escape, mark_branches, extra_attrs);
    }

    fn to_html_async_with_buf<const OUT_OF_ORDER: bool>(
        self,
        buf: &mut StreamBuilder,
        position: &mut Position,
        escape: bool,
        mark_branches: bool,
        extra_attrs: Vec<AnyAttribute>,
    ) where
        Self: Sized,
    {
        self.0.to_html_async_with_buf::<OUT_OF_ORDER>(buf, position, escape, mark_branches, extra_attrs);
    }

    fn hydrate<const FROM_SERVER: bool>(self, cursor: &Cursor, position: &PositionState) -> Self::State {
        self.0.hydrate::<FROM_SERVER>(cursor, position)
    }

    // `hydrate_async` is left to the trait's default on purpose: see the module docs.

    fn into_owned(self) -> Self::Owned {
        SyncHydrated(self.0.into_owned())
    }
}
