//! The canonical token walk behind block ids.
//!
//! Never `TokenStream::to_string()`: its spacing is the compiler's and differs between
//! toolchains. The walk sees identifiers, punctuation characters (without spacing), literal
//! text and delimiters, so reformatting a block keeps its hash.

use proc_macro2::{Delimiter, TokenStream, TokenTree};

/// FNV-1a 64, fixed forever.
pub(crate) struct Fnv(u64);

impl Fnv {
    pub(crate) fn new() -> Self {
        Self(0xcbf2_9ce4_8422_2325)
    }

    fn bytes(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 ^= u64::from(*byte);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    /// Feeds a labelled section (so that `a` + `bc` differs from `ab` + `c`).
    pub(crate) fn section(&mut self, label: &str, tokens: TokenStream) {
        self.bytes(label.as_bytes());
        self.bytes(&[0xff]);
        self.tokens(tokens);
        self.bytes(&[0xfe]);
    }

    fn tokens(&mut self, tokens: TokenStream) {
        for token in tokens {
            match token {
                TokenTree::Ident(ident) => {
                    self.bytes(b"i");
                    self.bytes(ident.to_string().as_bytes());
                    self.bytes(&[0]);
                }
                TokenTree::Punct(punct) => {
                    self.bytes(b"p");
                    let mut buffer = [0; 4];
                    self.bytes(punct.as_char().encode_utf8(&mut buffer).as_bytes());
                }
                TokenTree::Literal(literal) => {
                    self.bytes(b"l");
                    self.bytes(literal.to_string().as_bytes());
                    self.bytes(&[0]);
                }
                TokenTree::Group(group) => {
                    let (open, close) = match group.delimiter() {
                        Delimiter::Parenthesis => (b"(", b")"),
                        Delimiter::Brace => (b"{", b"}"),
                        Delimiter::Bracket => (b"[", b"]"),
                        Delimiter::None => (b"<", b">"),
                    };
                    self.bytes(open);
                    self.tokens(group.stream());
                    self.bytes(close);
                }
            }
        }
    }

    pub(crate) fn finish(&self) -> u64 {
        self.0
    }
}

/// Renders tokens for people (`BlockInfo::captures`): no compiler spacing, a space only
/// where two words would otherwise run together and after commas.
pub(crate) fn render(tokens: TokenStream) -> String {
    let mut out = String::new();
    render_into(tokens, &mut out);
    out
}

fn render_into(tokens: TokenStream, out: &mut String) {
    let mut previous_word = false;
    for token in tokens {
        let word = matches!(token, TokenTree::Ident(_) | TokenTree::Literal(_));
        if word && previous_word {
            out.push(' ');
        }
        match token {
            TokenTree::Ident(ident) => out.push_str(&ident.to_string()),
            TokenTree::Literal(literal) => out.push_str(&literal.to_string()),
            TokenTree::Punct(punct) => {
                out.push(punct.as_char());
                if punct.as_char() == ',' {
                    out.push(' ');
                }
            }
            TokenTree::Group(group) => {
                let (open, close) = match group.delimiter() {
                    Delimiter::Parenthesis => ("(", ")"),
                    Delimiter::Brace => ("{", "}"),
                    Delimiter::Bracket => ("[", "]"),
                    Delimiter::None => ("", ""),
                };
                out.push_str(open);
                render_into(group.stream(), out);
                out.push_str(close);
            }
        }
        previous_word = word;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn hash(tokens: TokenStream) -> u64 {
        let mut fnv = Fnv::new();
        fnv.section("body", tokens);
        fnv.finish()
    }

    #[test]
    fn reformatting_keeps_the_hash() {
        let a: TokenStream = "{ let y = x + 1 ; vec ! [ y ; 3 ] }".parse().unwrap();
        let b: TokenStream = "{\n    let y = x+1;\n    vec![y;3]\n}".parse().unwrap();
        assert_eq!(hash(a), hash(b));
    }

    #[test]
    fn moving_to_another_line_keeps_the_hash() {
        let a: TokenStream = "{ x + 1 }".parse().unwrap();
        let b: TokenStream = "\n\n\n        { x + 1 }".parse().unwrap();
        assert_eq!(hash(a), hash(b));
    }

    #[test]
    fn changing_the_body_changes_the_hash() {
        assert_ne!(hash(quote! { { x + 1 } }), hash(quote! { { x + 2 } }));
        assert_ne!(hash(quote! { { x + 1 } }), hash(quote! { { x - 1 } }));
        assert_ne!(hash(quote! { { f(x) } }), hash(quote! { { f[x] } }));
        assert_ne!(hash(quote! { { "a" } }), hash(quote! { { "b" } }));
    }

    #[test]
    fn sections_do_not_run_together() {
        let mut a = Fnv::new();
        a.section("captures", quote! { a });
        a.section("body", quote! { b c });
        let mut b = Fnv::new();
        b.section("captures", quote! { a b });
        b.section("body", quote! { c });
        assert_ne!(a.finish(), b.finish());
    }

    #[test]
    fn renders_types_without_compiler_spacing() {
        assert_eq!(
            render(quote! { Vec < Option < u32 > > }),
            "Vec<Option<u32>>"
        );
        assert_eq!(render(quote! { HashMap<String,u8> }), "HashMap<String, u8>");
        assert_eq!(render(quote! { &'static str }), "&'static str");
    }
}
