from bench.transcribe.run import main

main()
