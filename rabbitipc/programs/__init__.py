"""The programs on top of the library: options (flag beats environment beats default), logging
set-up, and the sender, receiver, stage and HTTP front mains (`cli`)."""
