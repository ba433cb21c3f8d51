from castray_client.cli import main

main()
