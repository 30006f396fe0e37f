//! `#[distributed]`: names the `remote!` blocks of a function, fills in the capture types the
//! function shows, and reports locals a block uses without capturing them.

use std::collections::HashSet;

use proc_macro2::{Delimiter, Group, TokenStream};
use quote::quote;
use syn::parse::Parser;
use syn::punctuated::Punctuated;
use syn::visit_mut::{self, VisitMut};
use syn::{Expr, FnArg, Ident, ItemFn, Pat, Stmt, Token, Type};

use crate::expand::{Errors, runtime_path};
use crate::model::Output;
use crate::parse::{BlockArgs, RemoteInput};

/// Expands `#[distributed]`.
pub(crate) fn distributed(args: BlockArgs, mut item: ItemFn) -> syn::Result<TokenStream> {
    if let Some(message) = &args.message {
        return Err(syn::Error::new_spanned(
            message,
            "`#[distributed]` has no message type to name: `message` belongs to `#[remote_block]`",
        ));
    }
    let krate = match args.krate {
        Some(path) => quote!(#path),
        None => runtime_path()?,
    };
    let generics = item
        .sig
        .generics
        .type_params()
        .map(|param| param.ident.to_string())
        .collect();
    let params = item
        .sig
        .inputs
        .iter()
        .filter_map(|input| match input {
            FnArg::Typed(typed) => Some(typed),
            FnArg::Receiver(_) => None,
        })
        .flat_map(|typed| bindings(&typed.pat, Some(&typed.ty)))
        .collect();
    let mut walker = Walker {
        krate,
        function: item.sig.ident.to_string(),
        generics,
        next_index: 0,
        scopes: vec![params],
        hidden: HashSet::new(),
        uncaptured: Vec::new(),
        scanning: false,
        errors: Errors::default(),
    };
    walker.visit_block_mut(&mut item.block);
    let errors = match walker.errors.finish() {
        Ok(()) => TokenStream::new(),
        Err(error) => error.into_compile_error(),
    };
    Ok(quote!(#errors #item))
}

/// A local variable in scope, with its type when the function spells it.
#[derive(Clone)]
struct Local {
    name: Ident,
    ty: Option<Type>,
}

struct Walker {
    krate: TokenStream,
    function: String,
    /// The type parameters of the function, which a block cannot name.
    generics: HashSet<String>,
    /// The index of the next `remote!` in source order.
    next_index: usize,
    /// Lexical scopes at the current point: of the function, or of the block being walked.
    scopes: Vec<Vec<Local>>,
    /// Inside a block body: the locals of the code around it, which the body cannot see.
    hidden: HashSet<String>,
    /// The hidden locals used in the block bodies being walked.
    uncaptured: Vec<Ident>,
    /// Walking a throwaway copy (macro arguments) only to find uses.
    scanning: bool,
    errors: Errors,
}

impl Walker {
    fn lookup(&self, name: &Ident) -> Option<&Local> {
        self.scopes
            .iter()
            .rev()
            .flat_map(|scope| scope.iter().rev())
            .find(|local| local.name == *name)
    }

    fn bind(&mut self, locals: Vec<Local>) {
        if let Some(scope) = self.scopes.last_mut() {
            scope.extend(locals);
        }
    }

    fn scoped(&mut self, locals: Vec<Local>, walk: impl FnOnce(&mut Self)) {
        self.scopes.push(locals);
        walk(self);
        self.scopes.pop();
    }

    /// Rewrites one `remote!`: named, with the types the function shows; or, when it uses a
    /// local it does not capture or a type parameter, as a stub (our error is the only one).
    fn remote(&mut self, mac: &mut syn::Macro) {
        let parser = |input: syn::parse::ParseStream<'_>| {
            RemoteInput::parse_after_crate(input, TokenStream::new())
        };
        // A malformed `remote!` keeps its tokens: the macro itself reports the mistake.
        let Ok(mut input) = parser.parse2(mac.tokens.clone()) else {
            return;
        };
        let index = self.next_index;
        self.next_index += 1;
        input.name = Some(syn::LitStr::new(
            &format!("{}#{index}", self.function),
            proc_macro2::Span::call_site(),
        ));
        for capture in input.captures.iter_mut() {
            if capture.ty.is_none() {
                capture.ty = self
                    .lookup(&capture.name)
                    .and_then(|local| local.ty.clone());
            }
        }
        let types: Vec<Type> = input
            .captures
            .iter()
            .filter_map(|capture| capture.ty.clone())
            .chain(input.output.clone())
            .collect();
        let generic = types.iter().any(|ty| self.check_generics(ty));

        let captured: HashSet<String> = input
            .captures
            .iter()
            .map(|capture| capture.name.to_string())
            .collect();
        let mut hidden = self.hidden.clone();
        hidden.extend(
            self.scopes
                .iter()
                .flatten()
                .map(|local| local.name.to_string()),
        );
        hidden.retain(|name| !captured.contains(name));
        let captures = input
            .captures
            .iter()
            .map(|capture| Local {
                name: capture.name.clone(),
                ty: capture.ty.clone(),
            })
            .collect();

        let uncaptured_before = self.uncaptured.len();
        let body = syn::Block::parse_within.parse2(input.body.clone());
        if let Ok(mut stmts) = body {
            let scopes = std::mem::replace(&mut self.scopes, vec![captures]);
            let outer = std::mem::replace(&mut self.hidden, hidden);
            for stmt in &mut stmts {
                self.visit_stmt_mut(stmt);
            }
            self.scopes = scopes;
            self.hidden = outer;
            input.body = quote!(#(#stmts)*);
        }
        let uncaptured: Vec<Ident> = self.uncaptured.drain(uncaptured_before..).collect();
        if generic || !uncaptured.is_empty() {
            // Only the locals visible here can be named by the stub.
            let uncaptured: Vec<Ident> = uncaptured
                .into_iter()
                .filter(|name| self.lookup(name).is_some())
                .collect();
            mac.tokens = stub_tokens(&input, &uncaptured);
        } else {
            mac.tokens = user_tokens(&input);
        }
    }

    /// Reports the function's type parameters in `ty`; true if there are any.
    fn check_generics(&mut self, ty: &Type) -> bool {
        struct Finder<'a> {
            generics: &'a HashSet<String>,
            found: Vec<Ident>,
        }
        impl<'ast> syn::visit::Visit<'ast> for Finder<'_> {
            fn visit_type_path(&mut self, path: &'ast syn::TypePath) {
                if path.qself.is_none()
                    && path.path.leading_colon.is_none()
                    && let Some(first) = path.path.segments.first()
                    && self.generics.contains(&first.ident.to_string())
                {
                    self.found.push(first.ident.clone());
                }
                syn::visit::visit_type_path(self, path);
            }
        }
        let mut finder = Finder {
            generics: &self.generics,
            found: Vec::new(),
        };
        syn::visit::Visit::visit_type(&mut finder, ty);
        let found = !finder.found.is_empty();
        for ident in finder.found {
            self.errors.push(syn::Error::new_spanned(
                &ident,
                format!(
                    "`remote!` blocks cannot use the generic parameter `{ident}` of `{}`: \
                     captures and results have concrete types",
                    self.function
                ),
            ));
        }
        found
    }

    /// A use of `name` inside a block body: an error if it names a local the body cannot see.
    fn check_use(&mut self, name: &Ident) {
        if self.hidden.contains(&name.to_string()) && self.lookup(name).is_none() {
            self.uncaptured.push(name.clone());
            self.errors.push(syn::Error::new_spanned(
                name,
                format!(
                    "`{name}` is a local variable of `{}` that this `remote!` block does not \
                     capture: add `{name}` to its capture list, as in `[{name}]`",
                    self.function
                ),
            ));
        }
    }

    /// Uses inside a macro call of the body, when its arguments parse as expressions.
    fn scan_macro(&mut self, mac: &syn::Macro) {
        let parser = Punctuated::<Expr, Token![,]>::parse_terminated;
        if let Ok(mut args) = parser.parse2(mac.tokens.clone()) {
            let scanning = std::mem::replace(&mut self.scanning, true);
            for arg in &mut args {
                self.visit_expr_mut(arg);
            }
            self.scanning = scanning;
        }
    }

    fn remote_call(&mut self, mac: &mut syn::Macro) {
        if self.scanning || !is_remote(&mac.path) {
            if !self.hidden.is_empty() {
                self.scan_macro(mac);
            }
            return;
        }
        self.remote(mac);
    }
}

impl VisitMut for Walker {
    fn visit_block_mut(&mut self, block: &mut syn::Block) {
        self.scoped(Vec::new(), |walker| {
            visit_mut::visit_block_mut(walker, block)
        });
    }

    fn visit_local_mut(&mut self, local: &mut syn::Local) {
        let inferred = local
            .init
            .as_ref()
            .and_then(|init| self.remote_type(&init.expr));
        if let Some(init) = &mut local.init {
            self.visit_expr_mut(&mut init.expr);
            if let Some((_, diverge)) = &mut init.diverge {
                self.visit_expr_mut(diverge);
            }
        }
        let locals = match &local.pat {
            Pat::Type(typed) => bindings(&typed.pat, Some(&typed.ty)),
            Pat::Ident(_) => {
                let mut locals = bindings(&local.pat, None);
                for binding in &mut locals {
                    binding.ty.clone_from(&inferred);
                }
                locals
            }
            pat => bindings(pat, None),
        };
        self.bind(locals);
    }

    fn visit_stmt_mut(&mut self, stmt: &mut Stmt) {
        if let Stmt::Macro(stmt_macro) = stmt {
            self.remote_call(&mut stmt_macro.mac);
            return;
        }
        visit_mut::visit_stmt_mut(self, stmt);
    }

    fn visit_expr_mut(&mut self, expr: &mut Expr) {
        match expr {
            Expr::Macro(expr_macro) => self.remote_call(&mut expr_macro.mac),
            Expr::Path(path)
                if !self.hidden.is_empty()
                    && path.qself.is_none()
                    && path.path.leading_colon.is_none()
                    && path.path.segments.len() == 1 =>
            {
                let ident = path.path.segments[0].ident.clone();
                self.check_use(&ident);
            }
            Expr::Closure(closure) => {
                let locals = closure
                    .inputs
                    .iter()
                    .flat_map(|pat| bindings(pat, None))
                    .collect();
                self.scoped(locals, |walker| walker.visit_expr_mut(&mut closure.body));
            }
            Expr::ForLoop(for_loop) => {
                self.visit_expr_mut(&mut for_loop.expr);
                let locals = bindings(&for_loop.pat, None);
                self.scoped(locals, |walker| walker.visit_block_mut(&mut for_loop.body));
            }
            Expr::If(expr_if) => {
                let locals = self.condition(&mut expr_if.cond);
                self.scoped(locals, |walker| {
                    walker.visit_block_mut(&mut expr_if.then_branch);
                });
                if let Some((_, otherwise)) = &mut expr_if.else_branch {
                    self.visit_expr_mut(otherwise);
                }
            }
            Expr::While(expr_while) => {
                let locals = self.condition(&mut expr_while.cond);
                self.scoped(locals, |walker| {
                    walker.visit_block_mut(&mut expr_while.body)
                });
            }
            _ => visit_mut::visit_expr_mut(self, expr),
        }
    }

    fn visit_arm_mut(&mut self, arm: &mut syn::Arm) {
        let locals = bindings(&arm.pat, None);
        self.scoped(locals, |walker| {
            if let Some((_, guard)) = &mut arm.guard {
                walker.visit_expr_mut(guard);
            }
            walker.visit_expr_mut(&mut arm.body);
        });
    }

    fn visit_macro_mut(&mut self, mac: &mut syn::Macro) {
        // Macros in item or type position: only their uses matter.
        if !self.hidden.is_empty() {
            self.scan_macro(mac);
        }
    }

    fn visit_item_mut(&mut self, _item: &mut syn::Item) {
        // Nested items see no locals and are not part of the function's blocks.
    }
}

impl Walker {
    /// Walks an `if`/`while` condition; returns the bindings of its `let`s.
    fn condition(&mut self, cond: &mut Expr) -> Vec<Local> {
        match cond {
            Expr::Let(expr_let) => {
                self.visit_expr_mut(&mut expr_let.expr);
                bindings(&expr_let.pat, None)
            }
            Expr::Binary(binary) if matches!(binary.op, syn::BinOp::And(_)) => {
                let mut locals = self.condition(&mut binary.left);
                self.scoped(locals.clone(), |walker| {
                    locals.extend(walker.condition(&mut binary.right));
                });
                locals
            }
            other => {
                self.visit_expr_mut(other);
                Vec::new()
            }
        }
    }

    /// The type of `remote!(.. -> T ..).await?` (`T`, or `U` for `Result<U, RemoteError>`)
    /// and of `remote!(..).await` (`Result<T, RemoteError>`); of `remote_all!(..).await`
    /// (`Vec<(PeerId, Result<T, RemoteError>)>`).
    fn remote_type(&self, expr: &Expr) -> Option<Type> {
        let (awaited, tried) = match expr {
            Expr::Try(tried) => (&*tried.expr, true),
            other => (other, false),
        };
        let Expr::Await(awaited) = awaited else {
            return None;
        };
        let Expr::Macro(mac) = &*awaited.base else {
            return None;
        };
        // A `remote!` (or `remote_all!`) is awaited for its value; a stream is not awaited.
        if !is_remote_of(&mac.mac.path, false) {
            return None;
        }
        let parser = |input: syn::parse::ParseStream<'_>| {
            RemoteInput::parse_after_crate(input, TokenStream::new())
        };
        let input = parser.parse2(mac.mac.tokens.clone()).ok()?;
        let output = Output::new(input.output);
        let value = output.value();
        let krate = &self.krate;
        if is_remote_all(&mac.mac.path) {
            return (!tried).then(|| {
                syn::parse_quote!(
                    ::std::vec::Vec<(#krate::PeerId, ::core::result::Result<#value, #krate::RemoteError>)>
                )
            });
        }
        if tried {
            Some(value.clone())
        } else {
            Some(syn::parse_quote!(
                ::core::result::Result<#value, #krate::RemoteError>
            ))
        }
    }
}

/// The block macros this attribute names and types: `remote!`, `remote_all!` and, with
/// `streams`, `remote_stream!` (any path ending so).
fn is_remote_of(path: &syn::Path, streams: bool) -> bool {
    path.segments.last().is_some_and(|segment| {
        segment.ident == "remote"
            || segment.ident == "remote_all"
            || (streams && segment.ident == "remote_stream")
    })
}

/// Any block macro this attribute names: `remote!`, `remote_all!` or `remote_stream!`.
fn is_remote(path: &syn::Path) -> bool {
    is_remote_of(path, true)
}

/// `remote_all!` or any path ending in `remote_all`.
fn is_remote_all(path: &syn::Path) -> bool {
    path.segments
        .last()
        .is_some_and(|segment| segment.ident == "remote_all")
}

/// The names a pattern binds; `ty` is the type of a plain `name` pattern.
fn bindings(pat: &Pat, ty: Option<&Type>) -> Vec<Local> {
    let mut out = Vec::new();
    collect_bindings(pat, ty, &mut out);
    out
}

fn collect_bindings(pat: &Pat, ty: Option<&Type>, out: &mut Vec<Local>) {
    match pat {
        Pat::Ident(pat_ident) => {
            out.push(Local {
                name: pat_ident.ident.clone(),
                ty: ty.filter(|_| pat_ident.by_ref.is_none()).cloned(),
            });
            if let Some((_, sub)) = &pat_ident.subpat {
                collect_bindings(sub, None, out);
            }
        }
        Pat::Type(typed) => collect_bindings(&typed.pat, Some(&typed.ty), out),
        Pat::Tuple(tuple) => {
            for elem in &tuple.elems {
                collect_bindings(elem, None, out);
            }
        }
        Pat::TupleStruct(tuple) => {
            for elem in &tuple.elems {
                collect_bindings(elem, None, out);
            }
        }
        Pat::Struct(pat_struct) => {
            for field in &pat_struct.fields {
                collect_bindings(&field.pat, None, out);
            }
        }
        Pat::Slice(slice) => {
            for elem in &slice.elems {
                collect_bindings(elem, None, out);
            }
        }
        Pat::Or(or) => {
            if let Some(first) = or.cases.first() {
                collect_bindings(first, None, out);
            }
        }
        Pat::Reference(reference) => collect_bindings(&reference.pat, None, out),
        Pat::Paren(paren) => collect_bindings(&paren.pat, ty, out),
        _ => {}
    }
}

/// `stub; target, [captures, uncaptured] -> T {}`: a value of the declared type that uses
/// the target and the locals involved, so that the reported mistake is the only message.
fn stub_tokens(input: &RemoteInput, uncaptured: &[Ident]) -> TokenStream {
    let target = &input.target;
    let mut names: Vec<&Ident> = input.captures.iter().map(|capture| &capture.name).collect();
    for name in uncaptured {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    let output = input.output.as_ref().map(|ty| quote!(-> #ty));
    quote!(stub; #target, [#(#names),*] #output {})
}

/// The tokens of a `remote!` call as `#[distributed]` rewrites it.
fn user_tokens(input: &RemoteInput) -> TokenStream {
    let mut tokens = TokenStream::new();
    if let Some(name) = &input.name {
        tokens.extend(quote!(name = #name;));
    }
    let target = &input.target;
    tokens.extend(quote!(#target,));
    let captures = input.captures.iter().map(|capture| {
        let name = &capture.name;
        match &capture.ty {
            Some(ty) => quote!(#name: #ty),
            None => quote!(#name),
        }
    });
    let mut list = Group::new(Delimiter::Bracket, quote!(#(#captures),*));
    list.set_span(input.bracket.span.join());
    tokens.extend(std::iter::once(proc_macro2::TokenTree::Group(list)));
    if let Some(output) = &input.output {
        tokens.extend(quote!(-> #output));
    }
    let mut body = Group::new(Delimiter::Brace, input.body.clone());
    body.set_span(input.brace.span.join());
    tokens.extend(std::iter::once(proc_macro2::TokenTree::Group(body)));
    tokens
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expand(item: ItemFn) -> String {
        let args = BlockArgs {
            krate: Some(syn::parse_quote!(krate)),
            message: None,
        };
        distributed(args, item).unwrap().to_string()
    }

    #[test]
    fn names_blocks_in_source_order_outer_first() {
        let out = expand(syn::parse_quote! {
            async fn demo(server: PeerId, client: PeerId) {
                remote!(server, [client] -> u32 {
                    remote!(client, [] -> u32 { 1 }).await.unwrap()
                }).await;
                remote!(server, [] { });
            }
        });
        let first = out.find("\"demo#0\"").unwrap();
        let second = out.find("\"demo#1\"").unwrap();
        let third = out.find("\"demo#2\"").unwrap();
        assert!(first < second && second < third, "{out}");
    }

    #[test]
    fn fills_in_capture_types() {
        let out = expand(syn::parse_quote! {
            async fn demo(server: PeerId, a: u32) {
                let b: String = String::new();
                let c = remote!(server, [a] -> Vec<u8> { vec![] }).await?;
                remote!(server, [a, b, c] { });
            }
        });
        assert!(
            out.contains("[a : u32 , b : String , c : Vec < u8 >]"),
            "{out}"
        );
    }

    #[test]
    fn names_and_types_remote_all_blocks_like_remote_blocks() {
        let out = expand(syn::parse_quote! {
            async fn demo(servers: Vec<PeerId>, a: u32) {
                let all = remote_all!(servers.clone(), [a] -> u64 { 1 }).await;
                remote!(servers[0], [all] { });
                let x = 2u32;
                remote_all!(servers, [a] -> u32 { a + x });
            }
        });
        assert!(
            out.contains("remote_all ! (name = \"demo#0\" ; servers . clone () , [a : u32]"),
            "{out}"
        );
        assert!(
            out.contains("[all : :: std :: vec :: Vec < (krate :: PeerId , :: core :: result :: Result < u64 , krate :: RemoteError >) >]"),
            "{out}"
        );
        assert!(out.contains("`x` is a local variable of `demo`"), "{out}");
    }

    #[test]
    fn reports_uncaptured_locals_even_when_they_shadow_items() {
        let out = expand(syn::parse_quote! {
            async fn demo(server: PeerId) {
                let helper = 3u32;
                let a = 1u32;
                remote!(server, [a] -> u32 { a + helper() });
            }
        });
        assert!(
            out.contains("`helper` is a local variable of `demo`"),
            "{out}"
        );
        assert!(!out.contains("`a` is a local"), "{out}");
    }

    #[test]
    fn locals_bound_inside_the_body_are_fine() {
        let out = expand(syn::parse_quote! {
            async fn demo(server: PeerId) {
                let x = 1u32;
                remote!(server, [] -> u32 { let x = 2u32; let f = |y: u32| y + x; f(x) });
            }
        });
        assert!(!out.contains("compile_error"), "{out}");
    }
}
