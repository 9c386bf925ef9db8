"""A film's dialogue: timed lines from subtitles or recognised speech, and their use in prompts."""
