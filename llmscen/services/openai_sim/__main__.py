"""`python -m llmscen.services.openai_sim`: serve the simulator as a process."""

import sys

from llmscen.services.openai_sim.app import main

sys.exit(main())
