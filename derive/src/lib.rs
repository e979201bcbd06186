//! `#[derive(Metrics)]` for membound's snapshot structs: see `membound::metrics`.
//!
//! Every named field is exported unless it says `#[metric(skip)]`, so a field added
//! to a snapshot cannot be forgotten by the exporters. A field without a
//! `#[metric(...)]` attribute is a counter in a struct marked `counters`, and a
//! compile error in any other.
//!
//! - `counter` or `gauge`: the field is one metric of that kind, named after the
//!   field; its help text is the first sentence of the field's doc comment.
//! - `skip`: the field is not a figure (an error value, a point on a private clock).
//! - `name = "..."`: another metric name (fields of one family share a name and
//!   differ in `label`).
//! - `label("key", "value")`: a label telling the fields of one family apart.
//! - `help = "..."`: the help text, in place of the doc comment's first sentence.
//!   Fields of one family share one: the struct's `help(name = "...")` gives it.
//! - `unit = "bytes" | "seconds" | "ticks"`.
//! - `with = path`: the figure is `path(self.field)` (a level's index, a
//!   revision's number).
//! - `nested`: the field is itself a `Metrics` snapshot whose figures belong to
//!   this one; `nested(prefix = "...")` puts a prefix before their names.
//! - `visit = path`: the field's figures are not one per field (a count per class
//!   in an array): `path(&self.field, out)` visits them.
//!
//! A field's value goes through `membound::metrics::ToValue`, so an `Option` that
//! is `None` exports nothing: an absent figure is not a zero.
//!
//! The struct carries `#[metrics(kind = "...")]`, the component kind, and may add
//! `counters`: then a field without `#[metric]` is a counter named after itself.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::quote;
use syn::{parse_macro_input, Data, DeriveInput, Expr, ExprLit, Fields, Lit, LitStr, Meta, Path};

/// Derives `membound::metrics::Metrics`; see the crate docs for the attributes.
#[proc_macro_derive(Metrics, attributes(metrics, metric))]
pub fn derive_metrics(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand(&input)
        .unwrap_or_else(syn::Error::into_compile_error)
        .into()
}

struct Field {
    ident: syn::Ident,
    kind: Option<Tokens>,
    name: Option<LitStr>,
    labels: Vec<(LitStr, LitStr)>,
    help: Option<LitStr>,
    unit: Option<Tokens>,
    with: Option<Path>,
    /// `nested`, with its prefix (empty for none).
    nested: Option<String>,
    visit: Option<Path>,
}

fn expand(input: &DeriveInput) -> syn::Result<Tokens> {
    let (kind, counters, families) = struct_kind(input)?;
    let Data::Struct(data) = &input.data else {
        return Err(syn::Error::new_spanned(
            input,
            "Metrics derives only for structs",
        ));
    };
    let Fields::Named(fields) = &data.fields else {
        return Err(syn::Error::new_spanned(input, "Metrics needs named fields"));
    };
    let mut visits = Vec::new();
    for field in &fields.named {
        let mut field = parse_field(field, counters)?;
        let name = field
            .name
            .as_ref()
            .map_or_else(|| field.ident.to_string(), LitStr::value);
        if let Some((_, help)) = families.iter().find(|(family, _)| *family == name) {
            field.help.get_or_insert_with(|| help.clone());
        }
        if field.help.is_none() {
            let doc = first_sentence(doc_attrs(&input.data, &field.ident));
            if !doc.is_empty() {
                field.help = Some(LitStr::new(&doc, field.ident.span()));
            }
        }
        if field.kind.is_some() && field.help.is_none() {
            return Err(syn::Error::new_spanned(
                &field.ident,
                "an exported field needs a doc comment (its help text) or `help = \"...\"`",
            ));
        }
        if let Some(visit) = visit(&field) {
            visits.push(visit);
        }
    }
    let ty = &input.ident;
    let (impl_generics, ty_generics, where_clause) = input.generics.split_for_impl();
    Ok(quote! {
        impl #impl_generics ::membound::metrics::Metrics for #ty #ty_generics #where_clause {
            const KIND: &'static str = #kind;

            fn visit(&self, out: &mut dyn ::membound::metrics::Visitor) {
                #(#visits)*
            }
        }
    })
}

/// The struct's `#[metrics(kind = "...", counters)]`: the component kind, and
/// whether a field without `#[metric]` is a counter (else it is an error).
/// Help texts of the families, by metric name.
type Families = Vec<(String, LitStr)>;

fn struct_kind(input: &DeriveInput) -> syn::Result<(LitStr, bool, Families)> {
    let (mut kind, mut counters, mut families) = (None, false, Vec::new());
    for attr in input.attrs.iter().filter(|a| a.path().is_ident("metrics")) {
        attr.parse_nested_meta(|meta| {
            if meta.path.is_ident("kind") {
                kind = Some(meta.value()?.parse::<LitStr>()?);
                Ok(())
            } else if meta.path.is_ident("counters") {
                counters = true;
                Ok(())
            } else if meta.path.is_ident("help") {
                meta.parse_nested_meta(|family| {
                    let name = family.path.require_ident()?.to_string();
                    families.push((name, family.value()?.parse::<LitStr>()?));
                    Ok(())
                })
            } else {
                Err(meta.error("expected `kind = \"...\"`, `counters` or `help(name = \"...\")`"))
            }
        })?;
    }
    let kind = kind.ok_or_else(|| {
        syn::Error::new_spanned(&input.ident, "missing #[metrics(kind = \"...\")]")
    })?;
    Ok((kind, counters, families))
}

fn parse_field(field: &syn::Field, counters: bool) -> syn::Result<Field> {
    let ident = field.ident.clone().expect("named field");
    let mut out = Field {
        ident: ident.clone(),
        kind: None,
        name: None,
        labels: Vec::new(),
        help: None,
        unit: None,
        with: None,
        nested: None,
        visit: None,
    };
    let mut skip = false;
    for attr in field.attrs.iter().filter(|a| a.path().is_ident("metric")) {
        attr.parse_nested_meta(|meta| {
            let path = &meta.path;
            if path.is_ident("counter") {
                out.kind = Some(quote!(Counter));
            } else if path.is_ident("gauge") {
                out.kind = Some(quote!(Gauge));
            } else if path.is_ident("skip") {
                skip = true;
            } else if path.is_ident("name") {
                out.name = Some(meta.value()?.parse()?);
            } else if path.is_ident("help") {
                out.help = Some(meta.value()?.parse()?);
            } else if path.is_ident("with") {
                out.with = Some(meta.value()?.parse()?);
            } else if path.is_ident("visit") {
                out.visit = Some(meta.value()?.parse()?);
            } else if path.is_ident("nested") {
                let mut prefix = String::new();
                if meta.input.peek(syn::token::Paren) {
                    meta.parse_nested_meta(|inner| {
                        if inner.path.is_ident("prefix") {
                            prefix = inner.value()?.parse::<LitStr>()?.value();
                            Ok(())
                        } else {
                            Err(inner.error("expected `prefix = \"...\"`"))
                        }
                    })?;
                }
                out.nested = Some(prefix);
            } else if path.is_ident("unit") {
                let unit: LitStr = meta.value()?.parse()?;
                out.unit = Some(match unit.value().as_str() {
                    "bytes" => quote!(Bytes),
                    "seconds" => quote!(Seconds),
                    "ticks" => quote!(Ticks),
                    _ => return Err(meta.error("unit is \"bytes\", \"seconds\" or \"ticks\"")),
                });
            } else if path.is_ident("label") {
                let content;
                syn::parenthesized!(content in meta.input);
                let key: LitStr = content.parse()?;
                content.parse::<syn::Token![,]>()?;
                let value: LitStr = content.parse()?;
                out.labels.push((key, value));
            } else {
                return Err(meta.error("unknown metric attribute"));
            }
            Ok(())
        })?;
    }
    if skip || out.nested.is_some() || out.visit.is_some() {
        out.kind = None;
    } else if out.kind.is_none() && counters {
        out.kind = Some(quote!(Counter));
    } else if out.kind.is_none() {
        return Err(syn::Error::new_spanned(
            &ident,
            "every field of a Metrics snapshot needs #[metric(counter | gauge | skip, ...)]",
        ));
    }
    Ok(out)
}

fn visit(field: &Field) -> Option<Tokens> {
    let ident = &field.ident;
    if let Some(path) = &field.visit {
        return Some(quote!(#path(&self.#ident, out);));
    }
    match field.nested.as_deref() {
        Some("") => {
            return Some(quote!(::membound::metrics::Metrics::visit(&self.#ident, out);));
        }
        Some(prefix) => {
            return Some(quote! {
                ::membound::metrics::Metrics::visit(
                    &self.#ident,
                    &mut ::membound::metrics::Scoped::new(out).prefix(#prefix),
                );
            });
        }
        None => {}
    }
    let kind = field.kind.as_ref()?;
    let name = field
        .name
        .clone()
        .unwrap_or_else(|| LitStr::new(&ident.to_string(), ident.span()));
    let help = field.help.as_ref().expect("help set for exported fields");
    let value = match &field.with {
        Some(with) => quote!(&#with(self.#ident)),
        None => quote!(&self.#ident),
    };
    let unit = field
        .unit
        .as_ref()
        .map(|unit| quote!(.with_unit(::membound::metrics::Unit::#unit)));
    let labels = (!field.labels.is_empty()).then(|| {
        let pairs = field.labels.iter().map(|(k, v)| quote!((#k, #v)));
        quote!(.with_labels(&[#(#pairs),*]))
    });
    Some(quote! {
        if let Some(value) = ::membound::metrics::ToValue::to_value(#value) {
            out.metric(
                ::membound::metrics::Metric::new(
                    #name,
                    ::membound::metrics::MetricKind::#kind,
                    #help,
                    value,
                )
                #unit
                #labels,
            );
        }
    })
}

/// The attributes of the named field `ident`.
fn doc_attrs<'a>(data: &'a Data, ident: &syn::Ident) -> &'a [syn::Attribute] {
    let Data::Struct(data) = data else { return &[] };
    data.fields
        .iter()
        .find(|f| f.ident.as_ref() == Some(ident))
        .map_or(&[], |f| &f.attrs)
}

/// The first sentence of a doc comment, its Markdown reduced to text: backticks
/// dropped, `[text](target)` and `[text]` links reduced to `text`.
fn first_sentence(attrs: &[syn::Attribute]) -> String {
    let mut text = String::new();
    for attr in attrs {
        let Meta::NameValue(nv) = &attr.meta else {
            continue;
        };
        if !nv.path.is_ident("doc") {
            continue;
        }
        let Expr::Lit(ExprLit {
            lit: Lit::Str(s), ..
        }) = &nv.value
        else {
            continue;
        };
        let line = s.value();
        let line = line.trim();
        if line.is_empty() {
            if !text.is_empty() {
                break; // end of the first paragraph
            }
            continue;
        }
        if !text.is_empty() {
            text.push(' ');
        }
        text.push_str(line);
    }
    let text = plain(&text);
    match text.find(". ") {
        Some(end) => text[..=end].to_string(),
        None => text,
    }
}

fn plain(markdown: &str) -> String {
    let mut out = String::new();
    let mut chars = markdown.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '`' | '[' => {}
            ']' => {
                if chars.peek() == Some(&'(') {
                    // skip the link target
                    for c in chars.by_ref() {
                        if c == ')' {
                            break;
                        }
                    }
                }
            }
            _ => out.push(c),
        }
    }
    out
}
