"""The book's plumbing, above the library: profiles and parameters (config), running chapters with
papermill (runner), the command line (cli), a chapter's session (chapter), trained models shared
between chapters (store), the README's scoreboard (readme). Nothing below imports from here."""
