"""Sources: turn what the user named (a folder, a file, a Hugging Face cache snapshot) into a Release."""
