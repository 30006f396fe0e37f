//! The validated model of a block: captures with their types, the result type, and the
//! rules that involve several pieces. Keeps the user's tokens for spans.

use std::collections::HashSet;

use proc_macro2::TokenStream;
use quote::quote;
use syn::visit::Visit;
use syn::{GenericArgument, Ident, PathArguments, Type};

/// A capture whose type is known.
pub(crate) struct Capture {
    pub(crate) name: Ident,
    pub(crate) ty: Type,
}

/// What the block returns, and whether the call flattens it.
pub(crate) struct Output {
    /// The type the body returns, as spelled (`()` if omitted).
    pub(crate) body: Type,
    /// `T` of `Result<T, RemoteError>` when the body's type is spelled so.
    pub(crate) flattened: Option<Type>,
}

impl Output {
    pub(crate) fn new(ty: Option<Type>) -> Self {
        let body = ty.unwrap_or_else(|| syn::parse_quote!(()));
        let flattened = remote_result_ok(&body).cloned();
        Self { body, flattened }
    }

    /// The type a call yields inside `Ok`.
    pub(crate) fn value(&self) -> &Type {
        self.flattened.as_ref().unwrap_or(&self.body)
    }
}

/// `T` if `ty` is spelled `Result<T, RemoteError>` (any path ending so).
fn remote_result_ok(ty: &Type) -> Option<&Type> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != "Result" {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let mut types = args.args.iter().filter_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty),
        _ => None,
    });
    let (Some(ok), Some(Type::Path(error)), None) = (types.next(), types.next(), types.next())
    else {
        return None;
    };
    let is_remote_error = error
        .path
        .segments
        .last()
        .is_some_and(|segment| segment.ident == "RemoteError");
    is_remote_error.then_some(ok)
}

/// Checks one capture or result type: owned and concrete.
pub(crate) fn check_type(ty: &Type, what: &str) -> syn::Result<()> {
    struct Finder<'a> {
        what: &'a str,
        error: Option<syn::Error>,
    }
    impl<'ast> Visit<'ast> for Finder<'_> {
        fn visit_type(&mut self, ty: &'ast Type) {
            let problem = match ty {
                Type::Reference(_) => {
                    Some("cannot be a reference: use an owned type such as `String` or `Vec<T>`")
                }
                Type::ImplTrait(_) => Some("cannot be `impl Trait`: name a concrete type"),
                Type::Infer(_) => Some("cannot be `_`: spell the type out"),
                Type::TraitObject(_) => Some("cannot be a trait object: name a concrete type"),
                Type::Ptr(_) => Some("cannot be a raw pointer"),
                Type::Path(path) if path.qself.is_none() && path.path.is_ident("Self") => {
                    Some("cannot be `Self`: a block body has no `Self`; name the type")
                }
                _ => None,
            };
            if let Some(problem) = problem {
                let error =
                    syn::Error::new_spanned(ty, format!("`remote!` {} {problem}", self.what));
                match &mut self.error {
                    Some(first) => first.combine(error),
                    None => self.error = Some(error),
                }
                return;
            }
            syn::visit::visit_type(self, ty);
        }
        fn visit_lifetime(&mut self, lifetime: &'ast syn::Lifetime) {
            if lifetime.ident != "static" {
                let error = syn::Error::new_spanned(
                    lifetime,
                    format!("`remote!` {} cannot borrow: use an owned type", self.what),
                );
                match &mut self.error {
                    Some(first) => first.combine(error),
                    None => self.error = Some(error),
                }
            }
        }
    }
    let mut finder = Finder { what, error: None };
    finder.visit_type(ty);
    finder.error.map_or(Ok(()), Err)
}

/// Checks the captures together: names, duplicates, types.
pub(crate) fn validate_captures(captures: &[Capture]) -> syn::Result<()> {
    let mut errors: Option<syn::Error> = None;
    let mut push = |error: syn::Error| match &mut errors {
        Some(first) => first.combine(error),
        None => errors = Some(error),
    };
    let mut seen = HashSet::new();
    for capture in captures {
        let name = capture.name.to_string();
        if name.starts_with("__") {
            push(syn::Error::new_spanned(
                &capture.name,
                "`remote!` capture names starting with `__` are reserved for generated code",
            ));
        }
        if name == "self" {
            push(syn::Error::new_spanned(
                &capture.name,
                "`remote!` cannot capture `self`: write `let this = self.clone();` and capture `this`",
            ));
        }
        if !seen.insert(name.clone()) {
            push(syn::Error::new_spanned(
                &capture.name,
                format!("`{name}` is captured twice in this `remote!`"),
            ));
        }
        if let Err(error) = check_type(&capture.ty, "capture types") {
            push(error);
        }
    }
    errors.map_or(Ok(()), Err)
}

/// The right-nested tuple type, pattern and value of the captures: `(a, (b, ()))`.
pub(crate) fn nested<T: quote::ToTokens>(items: &[T]) -> TokenStream {
    items
        .iter()
        .rev()
        .fold(quote!(()), |inner, item| quote!((#item, #inner)))
}
