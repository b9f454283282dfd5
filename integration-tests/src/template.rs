//! The server configs in `deploy/`, adapted for a test server.
//!
//! The files users deploy are the files the tests run on: the harness
//! changes only what a test server needs (ports, paths, certificates,
//! registration), one setting at a time, named by how its line starts. A
//! setting that is not in the file exactly once is a bug in the repository
//! (the file was edited without the harness), so it panics with the file
//! and the setting named; `the_deploy_configs_fill_in` checks both files.

/// A config file's text, being adapted.
pub(crate) struct Template {
    /// The file, for messages (e.g. `deploy/prosody/prosody.cfg.lua`).
    file: &'static str,
    text: String,
}

impl Template {
    /// The text of `file`.
    pub(crate) fn new(file: &'static str, text: &str) -> Template {
        Template {
            file,
            text: text.to_owned(),
        }
    }

    /// Replaces the one line that starts with `start` (after its
    /// indentation) by `line`, indented as it was.
    pub(crate) fn set(mut self, start: &str, line: &str) -> Template {
        let at = self.line_of(start);
        let old = self.text[at.clone()].to_owned();
        let indent = &old[..old.len() - old.trim_start().len()];
        self.text.replace_range(at, &format!("{indent}{line}"));
        self
    }

    /// Puts `lines` after the one line that starts with `start`, each
    /// indented as that line is.
    pub(crate) fn insert_after(mut self, start: &str, lines: &str) -> Template {
        let at = self.line_of(start);
        let old = self.text[at.clone()].to_owned();
        let indent = &old[..old.len() - old.trim_start().len()];
        let added: String = lines.lines().map(|l| format!("\n{indent}{l}")).collect();
        self.text.insert_str(at.end, &added);
        self
    }

    /// Replaces the one line that starts with `start` and the block under
    /// it (the lines after it indented deeper, and blank lines among them)
    /// by `text`, as a YAML section is replaced.
    pub(crate) fn replace_block(mut self, start: &str, text: &str) -> Template {
        let at = self.line_of(start);
        let line = &self.text[at.clone()];
        let depth = line.len() - line.trim_start().len();
        let mut end = at.end;
        let mut rest = self.text[at.end..].split_inclusive('\n');
        // The newline ending the first line.
        if let Some(newline) = rest.next() {
            let mut scanned = at.end + newline.len();
            for next in rest {
                let body = next.trim_end_matches('\n');
                let indent = body.len() - body.trim_start().len();
                if !body.trim().is_empty() && indent <= depth {
                    break;
                }
                scanned += next.len();
                if !body.trim().is_empty() {
                    end = scanned - (next.len() - body.len());
                }
            }
        }
        self.text.replace_range(at.start..end, text);
        self
    }

    /// The adapted text, with a first line saying where it comes from.
    pub(crate) fn finish(self, by: &str) -> String {
        format!(
            "{by} Written by xbus-integration-tests from {}.\n{}",
            self.file, self.text
        )
    }

    /// The byte range of the one line starting with `start`.
    fn line_of(&self, start: &str) -> std::ops::Range<usize> {
        let mut found = Vec::new();
        let mut offset = 0;
        for line in self.text.split_inclusive('\n') {
            let body = line.trim_end_matches('\n');
            if body.trim_start().starts_with(start) {
                found.push(offset..offset + body.len());
            }
            offset += line.len();
        }
        match found.as_slice() {
            [one] => one.clone(),
            _ => panic!(
                "{}: expected one line starting with {start:?}, found {}; \
                 the harness adapts that setting (integration-tests/src/template.rs)",
                self.file,
                found.len()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_replaced_and_added_by_their_start() {
        let text = "a = 1\n  b = 2 -- two\nc = 3\n";
        let out = Template::new("f", text)
            .set("b =", "b = 5")
            .insert_after("c =", "d = 4\ne = 5")
            .finish("--");
        assert_eq!(
            out,
            "-- Written by xbus-integration-tests from f.\na = 1\n  b = 5\nc = 3\nd = 4\ne = 5\n"
        );
    }

    #[test]
    fn a_yaml_block_is_replaced_whole() {
        let text = "a: 1\nlisten:\n  -\n    port: 1\n\n  -\n    port: 2\n# next\nb: 2\n";
        let out = Template::new("f", text)
            .replace_block("listen:", "listen:\n  - port: 9")
            .finish("#");
        assert_eq!(
            out,
            "# Written by xbus-integration-tests from f.\na: 1\nlisten:\n  - port: 9\n# next\nb: 2\n"
        );
    }

    #[test]
    #[should_panic(expected = "expected one line starting with \"x =\", found 0")]
    fn a_missing_setting_is_named() {
        let _ = Template::new("f", "a = 1\n").set("x =", "x = 2");
    }
}
