"""Language models in lrl: tasks, models, generation (issue #14). Nothing heavy is imported here."""
