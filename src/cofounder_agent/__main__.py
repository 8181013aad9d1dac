from cofounder_agent.cli import main

main()
