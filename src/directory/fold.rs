//! Folding text for search: lower case, accents and other diacritics
//! dropped (`é` → `e`, `ß` → `ss`, `Ł` → `l`), so `Jose` finds `José` and
//! `KRAKOW` finds `Kraków`.
//!
//! A table covers the Latin letters of Latin-1 and Latin Extended-A (the
//! names of Western, Central and Northern Europe); combining marks
//! (U+0300–U+036F, a decomposed `é`) are dropped; anything else is only
//! lower-cased. Control and invisible formatting characters fold to a
//! space, so a query can never match across the separators the index puts
//! between fields.

/// `text` folded.
pub fn fold(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        fold_char(c, &mut out);
    }
    out
}

/// The digits of `text` (a phone number as written: `+1 (425) 555-0100`).
pub fn digits(text: &str) -> String {
    text.chars().filter(char::is_ascii_digit).collect()
}

fn fold_char(c: char, out: &mut String) {
    if c.is_ascii() {
        if c.is_ascii_control() {
            out.push(' ');
        } else {
            out.push(c.to_ascii_lowercase());
        }
        return;
    }
    if ('\u{300}'..='\u{36f}').contains(&c) {
        return;
    }
    if c.is_control() || is_invisible(c) {
        out.push(' ');
        return;
    }
    if let Some(base) = latin(c) {
        out.push_str(base);
        return;
    }
    out.extend(c.to_lowercase());
}

fn is_invisible(c: char) -> bool {
    matches!(c, '\u{200b}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{2069}' | '\u{feff}' | '\u{ad}')
}

/// The base letters of a Latin letter with diacritics, lower case.
fn latin(c: char) -> Option<&'static str> {
    Some(match c {
        'À'..='Å' | 'à'..='å' | 'Ā' | 'ā' | 'Ă' | 'ă' | 'Ą' | 'ą' => "a",
        'Æ' | 'æ' => "ae",
        'Ç' | 'ç' | 'Ć' | 'ć' | 'Ĉ' | 'ĉ' | 'Ċ' | 'ċ' | 'Č' | 'č' => "c",
        'Ð' | 'ð' | 'Ď' | 'ď' | 'Đ' | 'đ' => "d",
        'È'..='Ë' | 'è'..='ë' | 'Ē' | 'ē' | 'Ĕ' | 'ĕ' | 'Ė' | 'ė' | 'Ę' | 'ę' | 'Ě' | 'ě' => {
            "e"
        }
        'Ĝ' | 'ĝ' | 'Ğ' | 'ğ' | 'Ġ' | 'ġ' | 'Ģ' | 'ģ' => "g",
        'Ĥ' | 'ĥ' | 'Ħ' | 'ħ' => "h",
        'Ì'..='Ï' | 'ì'..='ï' | 'Ĩ' | 'ĩ' | 'Ī' | 'ī' | 'Ĭ' | 'ĭ' | 'Į' | 'į' | 'İ' | 'ı' => {
            "i"
        }
        'Ĳ' | 'ĳ' => "ij",
        'Ĵ' | 'ĵ' => "j",
        'Ķ' | 'ķ' | 'ĸ' => "k",
        'Ĺ' | 'ĺ' | 'Ļ' | 'ļ' | 'Ľ' | 'ľ' | 'Ŀ' | 'ŀ' | 'Ł' | 'ł' => "l",
        'Ñ' | 'ñ' | 'Ń' | 'ń' | 'Ņ' | 'ņ' | 'Ň' | 'ň' | 'ŉ' | 'Ŋ' | 'ŋ' => "n",
        'Ò'..='Ö' | 'Ø' | 'ò'..='ö' | 'ø' | 'Ō' | 'ō' | 'Ŏ' | 'ŏ' | 'Ő' | 'ő' => "o",
        'Œ' | 'œ' => "oe",
        'Ŕ' | 'ŕ' | 'Ŗ' | 'ŗ' | 'Ř' | 'ř' => "r",
        'Ś' | 'ś' | 'Ŝ' | 'ŝ' | 'Ş' | 'ş' | 'Š' | 'š' | 'ſ' => "s",
        'ß' => "ss",
        'Ţ' | 'ţ' | 'Ť' | 'ť' | 'Ŧ' | 'ŧ' => "t",
        'Þ' | 'þ' => "th",
        'Ù'..='Ü'
        | 'ù'..='ü'
        | 'Ũ'
        | 'ũ'
        | 'Ū'
        | 'ū'
        | 'Ŭ'
        | 'ŭ'
        | 'Ů'
        | 'ů'
        | 'Ű'
        | 'ű'
        | 'Ų'
        | 'ų' => "u",
        'Ŵ' | 'ŵ' => "w",
        'Ý' | 'ý' | 'ÿ' | 'Ŷ' | 'ŷ' | 'Ÿ' => "y",
        'Ź' | 'ź' | 'Ż' | 'ż' | 'Ž' | 'ž' => "z",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accents_and_case_fold_away() {
        assert_eq!(fold("José Müller"), "jose muller");
        assert_eq!(fold("KRAKÓW"), "krakow");
        assert_eq!(fold("Łukasz Żółć"), "lukasz zolc");
        assert_eq!(fold("Straße"), "strasse");
        assert_eq!(fold("Ægir Œuvre"), "aegir oeuvre");
        assert_eq!(fold("François"), "francois");
        assert_eq!(fold("Đorđe Šćepanović"), "dorde scepanovic");
    }

    #[test]
    fn decomposed_marks_are_dropped() {
        assert_eq!(fold("Jose\u{301}"), "jose");
    }

    #[test]
    fn other_scripts_are_lower_cased_only() {
        assert_eq!(fold("Ελένη"), "ελένη");
        assert_eq!(fold("田中"), "田中");
    }

    #[test]
    fn controls_and_invisible_characters_become_spaces() {
        assert_eq!(fold("a\u{1}b\u{200b}c\u{202e}d"), "a b c d");
    }

    #[test]
    fn digits_keep_only_digits() {
        assert_eq!(digits("+1 (425) 555-0100"), "14255550100");
        assert_eq!(digits("none"), "");
    }
}
